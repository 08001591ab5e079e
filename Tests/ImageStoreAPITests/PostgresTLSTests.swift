import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Logging
import Testing

/// TLS to PostgreSQL, for real: a private cluster with `ssl = on` and a certificate signed by a CA that
/// `openssl` made for the test. Verification against that CA connects (and the pool's sessions are
/// encrypted); against another CA, or requiring TLS of a server without it, fails at once with a
/// message naming the problem — from the connection check, `imagestore db`, and `imagestore serve`,
/// which refuses to start.
@Suite(.serialized) struct PostgresTLSTests {
    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return logger
    }

    static func settings(
        _ server: PostgresServer, database: String, host: String = "localhost", tls: PostgresImageRepository.Settings.TLS,
        rootCertificate: String?
    ) -> PostgresImageRepository.Settings {
        .init(
            host: host, port: server.port, username: PostgresServer.username, password: server.password, database: database,
            tls: tls, rootCertificatePath: rootCertificate, maxConnections: 2,
            // Not what is tested here (the short deadline below is): room for a TLS handshake and the
            // schema migration on a loaded machine, where 10 s was once not enough.
            timeout: .seconds(30))
    }

    static func url(_ server: PostgresServer, _ database: String, host: String = "localhost", _ query: String) -> String {
        "postgresql://\(PostgresServer.username):\(server.password)@\(host):\(server.port)/\(database)?\(query)"
    }

    @Test func verifiedAgainstItsCA_connectsEncrypted_andAnotherCAOrNoTLSFailClearly() async throws {
        let server = try await PostgresServer.start(tls: true)
        defer { server.stopNow() }
        let certificates = try #require(server.certificates)
        let work = try TemporaryDirectory()
        defer { work.remove() }
        let wrongCA = try await TestCertificates.make(in: work.path, name: "other").caPath
        let database = "tls_db"
        try await server.psql("CREATE DATABASE \(database)")

        // verify-full (the name, localhost, is in the certificate), verify-ca by address, require, prefer: TLS.
        for (host, tls) in [
            ("localhost", PostgresImageRepository.Settings.TLS.verify(hostname: true)), ("127.0.0.1", .verify(hostname: false)),
            ("127.0.0.1", .require), ("127.0.0.1", .prefer),
        ] {
            let settings = Self.settings(server, database: database, host: host, tls: tls, rootCertificate: certificates.caPath)
            #expect(await PostgresImageRepository.checkConnection(settings, logger: Self.logger) == .connected(tls: true), "\(tls)")
        }
        let plain = Self.settings(server, database: database, host: "127.0.0.1", tls: .disable, rootCertificate: nil)
        #expect(await PostgresImageRepository.checkConnection(plain, logger: Self.logger) == .connected(tls: false))

        // The pool itself, verified: it works, and PostgreSQL reports its session as encrypted.
        let verified = try PostgresImageRepository(
            settings: Self.settings(server, database: database, tls: .verify(hostname: true), rootCertificate: certificates.caPath),
            logger: Self.logger)
        let image = Image(name: "over-tls")
        try await verified.create(image)
        #expect(try await verified.get(image.id)?.name == "over-tls")
        let encrypted = try await server.psql(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'imagestore'")
        #expect(encrypted == "t")
        await verified.shutdown()

        // Another CA: the certificate does not verify; said as such, with the file.
        let wrong = Self.settings(server, database: database, tls: .verify(hostname: true), rootCertificate: wrongCA)
        let refused = await PostgresImageRepository.checkConnection(wrong, logger: Self.logger)
        guard case .tlsFailed(let reason) = refused else {
            Issue.record("a certificate from another CA was accepted: \(refused)")
            return
        }
        #expect(reason.contains("was not verified against the CA in sslrootcert \(wrongCA)"), "\(reason)")
        // Through the pool (whose failed attempts are retried in the background): 503 at the deadline, no hang.
        var short = wrong
        short.timeout = .seconds(1)
        let pool = try PostgresImageRepository(settings: short, logger: Self.logger)
        let error = await #expect(throws: ImageStoreError.self) { try await pool.get(image.id) }
        #expect(error?.code == .dependencyUnavailable)
        await pool.shutdown()

        // `imagestore db version` and `imagestore serve` say it and stop.
        let query = "sslmode=verify-full&sslrootcert=\(wrongCA)"
        let run = try await DatabaseCommandTests.imagestore(["db", "version", "--connection", Self.url(server, database, query)], in: work)
        #expect(run.exitCode == 1)
        #expect(run.output.contains("was not verified against the CA in sslrootcert \(wrongCA)"), "\(run.output)")
        let serve = try await Self.serve(Self.url(server, database, query), in: work)
        #expect(serve.exitCode != 0)
        #expect(serve.output.contains("was not verified against the CA in sslrootcert \(wrongCA)"), "\(serve.output)")

        // The right CA: `db version` connects (a fresh database: no version yet, exit 1 saying so).
        let good = try await DatabaseCommandTests.imagestore(
            ["db", "sync", "--connection", Self.url(server, database, "sslmode=verify-full&sslrootcert=\(certificates.caPath)")], in: work)
        #expect(good.exitCode == 0, "\(good.output)")
    }

    @Test func tlsRequiredOfAServerWithoutIt_failsClearly() async throws {
        try await SharedPostgresServer.withDatabase { server, url in
            let database = String(url.split(separator: "/").last!)
            let work = try TemporaryDirectory()
            defer { work.remove() }
            for tls in [PostgresImageRepository.Settings.TLS.require, .verify(hostname: true)] {
                let settings = Self.settings(server, database: database, host: "127.0.0.1", tls: tls, rootCertificate: nil)
                let check = await PostgresImageRepository.checkConnection(settings, logger: Self.logger)
                guard case .tlsFailed(let reason) = check else {
                    Issue.record("\(tls) against a server without TLS: \(check)")
                    continue
                }
                #expect(reason.contains("does not offer TLS") && reason.contains("sslmode=\(tls.sslmode)"), "\(reason)")
            }
            // prefer falls back to plain, as libpq's.
            let prefer = Self.settings(server, database: database, host: "127.0.0.1", tls: .prefer, rootCertificate: nil)
            #expect(await PostgresImageRepository.checkConnection(prefer, logger: Self.logger) == .connected(tls: false))

            let required = Self.url(server, database, host: "127.0.0.1", "sslmode=require")
            let run = try await DatabaseCommandTests.imagestore(["db", "sync", "--connection", required], in: work)
            #expect(run.exitCode == 1)
            #expect(run.output.contains("does not offer TLS"), "\(run.output)")
            let serve = try await Self.serve(required, in: work)
            #expect(serve.exitCode != 0)
            #expect(serve.output.contains("does not offer TLS"), "\(serve.output)")
        }
    }

    /// Runs `imagestore serve` with `connection` until it exits (it is expected to refuse to start);
    /// killed if it is still running after 60 s.
    static func serve(_ connection: String, in work: TemporaryDirectory) async throws -> DatabaseCommandTests.Run {
        let datadir = try work.makeDirectory("images-\(UUID().uuidString.prefix(8))")
        try #require(FileManager.default.createFile(atPath: datadir + "/.glance", contents: Data()))
        let config = work.appending("serve-\(UUID().uuidString.prefix(8)).conf")
        try """
        [DEFAULT]
        bind_host = 127.0.0.1
        bind_port = \(try freeTCPPort())
        [glance_store]
        filesystem_store_datadir = \(datadir)
        [database]
        connection = \(connection)
        """.write(toFile: config, atomically: true, encoding: .utf8)
        return try await DatabaseCommandTests.imagestore(["serve", "--config-file", config], in: work)
    }
}
