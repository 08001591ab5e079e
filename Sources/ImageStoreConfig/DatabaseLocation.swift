import Foundation

/// Where image metadata is kept: `[database] connection`, in SQLAlchemy URL syntax as Glance uses.
public enum DatabaseLocation: Sendable, Equatable {
    /// A SQLite file; the path `:memory:` means an in-memory database.
    case sqlite(path: String)
    /// A PostgreSQL URL (`postgresql://` or `postgresql+psycopg2://`), kept as written.
    case postgresql(url: String)

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
        for scheme in ["postgresql://", "postgresql+psycopg2://"] where url.hasPrefix(scheme) {
            // Minimal check until the PostgreSQL repository lands: [user[:password]@][host][:port]/database[?…]
            let rest = url.dropFirst(scheme.count)
            let beforeQuery = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
            guard let slash = beforeQuery.lastIndex(of: "/"), beforeQuery.index(after: slash) < beforeQuery.endIndex else {
                // The URL is not echoed: it may hold a password.
                return .failure(Reason("the PostgreSQL URL does not name a database (postgresql://user:password@host/dbname)"))
            }
            return .success(.postgresql(url: url))
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
