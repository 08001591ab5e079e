import ImageStoreCore
import NIOSSL
import PostgresNIO

/// The two postgres-nio configurations built from one `Settings`: the pool's (`PostgresClient`) and the
/// single connection of `checkConnection` (`PostgresConnection`). Their TLS types differ (a
/// `TLSConfiguration` or an `NIOSSLContext`), so each says how it takes one; where to connect and which
/// TLS mode applies are decided once, in `Settings.configuration()`.
protocol PostgresEndpointConfiguration {
    associatedtype TLS
    static var withoutTLS: TLS { get }
    static func preferTLS(_ configuration: TLSConfiguration) throws -> TLS
    static func requireTLS(_ configuration: TLSConfiguration) throws -> TLS
    init(host: String, port: Int, username: String, password: String?, database: String?, tls: TLS)
    init(unixSocketPath: String, username: String, password: String?, database: String?)
}

extension PostgresClient.Configuration: PostgresEndpointConfiguration {
    static var withoutTLS: TLS { .disable }
    static func preferTLS(_ configuration: TLSConfiguration) -> TLS { .prefer(configuration) }
    static func requireTLS(_ configuration: TLSConfiguration) -> TLS { .require(configuration) }
}

extension PostgresConnection.Configuration: PostgresEndpointConfiguration {
    static var withoutTLS: TLS { .disable }
    static func preferTLS(_ configuration: TLSConfiguration) throws -> TLS { .prefer(try NIOSSLContext(configuration: configuration)) }
    static func requireTLS(_ configuration: TLSConfiguration) throws -> TLS { .require(try NIOSSLContext(configuration: configuration)) }
}

extension PostgresImageRepository.Settings {
    /// The Unix socket when one is configured (no TLS there), else host and port with the TLS of `tls`.
    /// Throws when `sslrootcert` cannot be read, or (for a single connection) TLS cannot be set up.
    func configuration<Configuration: PostgresEndpointConfiguration>(
        _: Configuration.Type = Configuration.self
    ) throws -> Configuration {
        if let unixSocketDirectory {
            return Configuration(
                unixSocketPath: "\(unixSocketDirectory)/.s.PGSQL.\(port)", username: username, password: password,
                database: database)
        }
        let mode: Configuration.TLS
        switch (tls, try tlsConfiguration()) {
        case (.prefer, let configuration?): mode = try Configuration.preferTLS(configuration)
        case (_, let configuration?): mode = try Configuration.requireTLS(configuration)
        case (_, nil): mode = Configuration.withoutTLS
        }
        return Configuration(
            host: host ?? "localhost", port: port, username: username, password: password, database: database, tls: mode)
    }

    /// The TLS of `tls` (nil: none).
    private func tlsConfiguration() throws -> TLSConfiguration? {
        switch tls {
        case .disable:
            return nil
        case .prefer, .require:
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            return configuration
        case .verify(let hostname):
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = hostname ? .fullVerification : .noHostnameVerification
            if let rootCertificatePath {
                do {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(rootCertificatePath))
                } catch {
                    throw ImageStoreError.badRequest(
                        "[database] connection: sslrootcert \(rootCertificatePath) cannot be read: \(error)")
                }
            }
            return configuration
        }
    }
}
