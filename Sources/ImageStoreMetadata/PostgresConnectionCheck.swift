import Foundation
import ImageStoreCore
import Logging
import NIOSSL
import PostgresNIO

extension PostgresImageRepository {
    /// What one connection attempt found (`checkConnection`).
    public enum ConnectionCheck: Sendable, Equatable {
        /// Connected and answered; `tls`: the session is encrypted.
        case connected(tls: Bool)
        /// TLS was required and could not be set up (the server offers none, or its certificate did not
        /// verify): a configuration problem, which waiting does not fix. The text says which.
        case tlsFailed(String)
        /// No answer (down, refused, unreachable, past the deadline) or another refusal (e.g. the login).
        case unavailable(String)
    }

    /// Makes one connection directly (not through the pool) under `settings.timeout` and runs a query.
    ///
    /// The pool retries failed connections in the background and its callers only see their deadline
    /// pass, so a certificate that never verifies would look like a slow database: 503s, and a reason
    /// only at debug level. `imagestore serve` calls this at start-up and stops on `.tlsFailed` with its
    /// message; `imagestore db` verbs stop on any failure.
    public static func checkConnection(_ settings: Settings, logger: Logger) async -> ConnectionCheck {
        var configuration: PostgresConnection.Configuration
        do {
            configuration = try settings.configuration()
        } catch {
            return .tlsFailed("\(error)")
        }
        configuration.options.connectTimeout = .nanoseconds(settings.timeout.wholeNanoseconds)
        let outcome: ConnectionCheck? = await ImageStoreCore.value(within: settings.timeout, cancelAtDeadline: true) { [configuration] in
            do {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
                do {
                    let rows = try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: logger)
                        .collect()
                    let tls = try rows.first?.decode(Bool.self) ?? false
                    try? await connection.close()
                    return .connected(tls: tls)
                } catch {
                    try? await connection.close()
                    throw error
                }
            } catch {
                return classify(error, settings)
            }
        }
        return outcome ?? .unavailable("no answer within \(settings.timeout)")
    }

    /// TLS failures by what an operator has to change; everything else is "unavailable" with the details.
    static func classify(_ error: any Error, _ settings: Settings) -> ConnectionCheck {
        let server = settings.unixSocketDirectory.map { "the socket in \($0)" } ?? "\(settings.host ?? "localhost"):\(settings.port)"
        let psql = error as? PSQLError
        if psql?.code == .sslUnsupported {
            return .tlsFailed(
                "PostgreSQL at \(server) does not offer TLS, and [database] connection requires it (sslmode=\(settings.tls.sslmode)); "
                    + "turn ssl on in PostgreSQL, or use sslmode=prefer or disable")
        }
        let underlying = psql?.underlying ?? error
        if underlying is NIOSSLError || underlying is BoringSSLError || underlying is NIOSSLExtraError {
            let text = "\(underlying)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
                let trusted = settings.rootCertificatePath.map { "the CA in sslrootcert \($0)" } ?? "the system's CAs"
                return .tlsFailed(
                    "the certificate of PostgreSQL at \(server) was not verified against \(trusted) "
                        + "(sslmode=\(settings.tls.sslmode)): \(text)")
            }
            return .tlsFailed("TLS with PostgreSQL at \(server) failed (sslmode=\(settings.tls.sslmode)): \(text)")
        }
        if let psql, let info = psql.serverInfo {
            return .unavailable("PostgreSQL at \(server) refused: \(info[.message] ?? "") (\(info[.sqlState] ?? ""))")
        }
        return .unavailable("PostgreSQL at \(server) cannot be reached: \(psql.map { "\($0.code) \($0.underlying.map { "\($0)" } ?? "")" } ?? "\(error)")")
    }
}

extension PostgresImageRepository.Settings.TLS {
    /// libpq's name of this mode, for messages.
    public var sslmode: String {
        switch self {
        case .disable: "disable"
        case .prefer: "prefer"
        case .require: "require"
        case .verify(let hostname): hostname ? "verify-full" : "verify-ca"
        }
    }
}
