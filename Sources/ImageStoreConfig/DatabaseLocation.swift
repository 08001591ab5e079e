import Foundation

/// Where image metadata is kept: `[database] connection`, in SQLAlchemy URL syntax as Glance uses.
public enum DatabaseLocation: Sendable, Equatable {
    /// A SQLite file; the path `:memory:` means an in-memory database.
    case sqlite(path: String)
    /// A PostgreSQL server (`postgresql://` or `postgresql+psycopg2://`).
    case postgresql(PostgresURL)

    /// The path SQLite uses for an in-memory database.
    public static let memoryPath = ":memory:"
    /// Glance's default: `sqlite:////var/lib/glance/glance.sqlite`.
    public static let defaultLocation = DatabaseLocation.sqlite(path: "/var/lib/glance/glance.sqlite")

    /// Parses a SQLAlchemy-style URL, or returns why it is not one we support.
    ///
    /// - `sqlite:////abs/path.db` → `/abs/path.db` (four slashes: absolute)
    /// - `sqlite:///rel.db` → `rel.db` (three slashes: relative to the working directory)
    /// - `sqlite://` and `sqlite:///:memory:` → in memory
    /// - `postgresql://…`, `postgresql+psycopg2://…` → kept (must name a database)
    public static func parse(_ url: String) -> Result<DatabaseLocation, Reason> {
        if url == "sqlite://" || url == "sqlite:///:memory:" { return .success(.sqlite(path: memoryPath)) }
        if url.hasPrefix("sqlite:///") {
            let path = String(url.dropFirst("sqlite:///".count))
            // SQLAlchemy would read these as URL query options; a file name containing them is a mistake.
            guard !path.isEmpty, !path.contains("?") else {
                return .failure(Reason("\(quoted(url)) is not a SQLite URL with a file path (sqlite:////absolute/path.db)"))
            }
            return .success(.sqlite(path: path))
        }
        if url.hasPrefix("postgresql://") || url.hasPrefix("postgresql+psycopg2://") {
            return PostgresURL.parse(url).map(DatabaseLocation.postgresql)
        }
        let scheme = url.split(separator: ":", maxSplits: 1).first.map(String.init) ?? url
        return .failure(
            Reason(
                "\(quoted(scheme)) databases are not supported; use sqlite:////path/to/file.db or postgresql://user:password@host/dbname"
            ))
    }

    /// Why a connection URL was refused.
    public struct Reason: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }
}

/// A PostgreSQL connection URL as SQLAlchemy and libpq write it:
/// `postgresql[+psycopg2]://[user[:password]@][host][:port]/database[?host=/socket/dir&sslmode=…&sslrootcert=…]`.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    /// TLS as libpq's `sslmode` names it.
    public enum TLSMode: String, Sendable, Equatable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, else plain; the certificate is not verified (libpq's default).
        case allow, prefer
        /// TLS or no connection; the certificate is not verified.
        case require
        /// TLS with the certificate verified against `sslrootcert` (or the system's roots); `verify-full`
        /// also checks the host name.
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var username: String
    public var password: String?
    /// Host name or address; nil with `unixSocketDirectory`.
    public var host: String?
    public var port: Int
    /// `?host=/run/postgresql`: connect through the socket in this directory.
    public var unixSocketDirectory: String?
    public var database: String
    public var tlsMode: TLSMode
    /// `sslrootcert`: PEM file of the certificate authorities a verifying mode trusts.
    public var rootCertificatePath: String?

    public init(
        username: String, password: String? = nil, host: String? = "localhost", port: Int = 5432,
        unixSocketDirectory: String? = nil, database: String, tlsMode: TLSMode = .prefer, rootCertificatePath: String? = nil
    ) {
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.unixSocketDirectory = unixSocketDirectory
        self.database = database
        self.tlsMode = tlsMode
        self.rootCertificatePath = rootCertificatePath
    }

    /// The URL without its password (for logs and messages).
    public var description: String {
        var text = "postgresql://\(username)\(password == nil ? "" : ":***")@\(host ?? "")"
        if unixSocketDirectory == nil { text += ":\(port)" }
        text += "/\(database)"
        var query: [String] = []
        if let unixSocketDirectory { query.append("host=\(unixSocketDirectory)") }
        if tlsMode != .prefer { query.append("sslmode=\(tlsMode.rawValue)") }
        if let rootCertificatePath { query.append("sslrootcert=\(rootCertificatePath)") }
        return query.isEmpty ? text : text + "?" + query.joined(separator: "&")
    }

    /// Parses the URL, or says what is wrong with it (never echoing it: it may hold a password).
    public static func parse(_ url: String) -> Result<PostgresURL, DatabaseLocation.Reason> {
        guard let schemeEnd = url.range(of: "://") else { return .failure(.init("not a postgresql:// URL")) }
        let rest = url[schemeEnd.upperBound...]
        let parts = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let main = parts[0]
        guard let slash = main.firstIndex(of: "/"), main.index(after: slash) < main.endIndex else {
            return .failure(.init("the PostgreSQL URL does not name a database (postgresql://user:password@host/dbname)"))
        }
        guard let database = String(main[main.index(after: slash)...]).removingPercentEncoding, !database.contains("/") else {
            return .failure(.init("the PostgreSQL URL's database name is not valid"))
        }
        var authority = main[..<slash]
        var username = "postgres"
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let userParts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let user = String(userParts[0]).removingPercentEncoding, !user.isEmpty else {
                return .failure(.init("the PostgreSQL URL's user name is empty or not valid percent-encoding"))
            }
            username = user
            if userParts.count > 1 {
                guard let decoded = String(userParts[1]).removingPercentEncoding else {
                    return .failure(.init("the PostgreSQL URL's password is not valid percent-encoding"))
                }
                password = decoded
            }
        }
        var host: String? = "localhost"
        var port = 5432
        if !authority.isEmpty {
            var hostPart = authority
            // [v6::address]:port
            if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
                hostPart = authority[authority.index(after: authority.startIndex)..<close]
                let after = authority[authority.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let p = Int(after.dropFirst()), (1...65535).contains(p) else {
                        return .failure(.init("the PostgreSQL URL's port is not a number from 1 to 65535"))
                    }
                    port = p
                }
            } else if let colon = authority.lastIndex(of: ":") {
                hostPart = authority[..<colon]
                guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                    return .failure(.init("the PostgreSQL URL's port is not a number from 1 to 65535"))
                }
                port = p
            }
            if !hostPart.isEmpty { host = String(hostPart) }
        }
        var result = PostgresURL(username: username, password: password, host: host, port: port, database: database)
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0])
                let value = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
                switch key {
                case "host":
                    if value.hasPrefix("/") {
                        result.unixSocketDirectory = value
                        result.host = nil
                    } else if !value.isEmpty {
                        result.host = value
                    }
                case "port":
                    guard let p = Int(value), (1...65535).contains(p) else {
                        return .failure(.init("the PostgreSQL URL's port is not a number from 1 to 65535"))
                    }
                    result.port = p
                case "sslmode":
                    guard let mode = TLSMode(rawValue: value) else {
                        return .failure(
                            .init(
                                "sslmode \(quoted(value)) is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))"))
                    }
                    result.tlsMode = mode
                case "sslrootcert":
                    result.rootCertificatePath = value
                case "user":
                    result.username = value
                case "password":
                    result.password = value
                default:
                    // SQLAlchemy and psycopg2 options (charset, connect_timeout, application_name…) change nothing here.
                    continue
                }
            }
        }
        return .success(result)
    }
}

/// `[database]`'s pool options, with oslo.db's names; they apply to PostgreSQL (SQLite has no pool).
public struct DatabaseOptions: Sendable, Equatable {
    /// `max_pool_size`: connections each ImageStore process keeps open at most (oslo.db's default 5).
    public var maxPoolSize: Int = 5
    /// `pool_timeout` (seconds): how long a request waits on the database — for a connection and for its queries —
    /// before it is answered 503. Bounded so a database that is down or restarting never hangs a request.
    /// nil: the engine's default (`postgresTimeout`, `sqliteTimeout`).
    public var poolTimeout: Duration?

    /// PostgreSQL's default: a server that is down or restarting answers 503 quickly.
    public static let defaultPostgresTimeout: Duration = .seconds(3)
    /// SQLite's default: its waits are local locks and fsyncs, which a busy disk can stretch past a few
    /// seconds without anything being wrong; a hung share still ends in 503, later.
    public static let defaultSQLiteTimeout: Duration = .seconds(30)

    public var postgresTimeout: Duration { poolTimeout ?? Self.defaultPostgresTimeout }
    public var sqliteTimeout: Duration { poolTimeout ?? Self.defaultSQLiteTimeout }

    public enum Key {
        public static let maxPoolSize = "max_pool_size"
        public static let poolTimeout = "pool_timeout"
    }

    public init(maxPoolSize: Int = 5, poolTimeout: Duration? = nil) {
        self.maxPoolSize = maxPoolSize
        self.poolTimeout = poolTimeout
    }
}
