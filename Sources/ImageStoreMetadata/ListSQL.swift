import Foundation
import ImageStoreCore

/// A value bound to a statement, independent of the engine (each repository converts it to its driver's type).
enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case bool(Bool)

    /// A sort key's value as `SortValue` holds it (the marker's position in the order).
    init(_ value: SortValue) {
        switch value {
        case .null: self = .null
        case .integer(let v): self = .integer(v)
        case .real(let v): self = .real(v)
        case .text(let v): self = .text(v)
        }
    }

    var isNull: Bool { self == .null }
}

/// The SQL spellings that differ between the engines the list query runs on.
enum SQLDialect: Sendable {
    case sqlite
    case postgresql

    /// A condition that is never true.
    var never: String {
        switch self {
        case .sqlite: "0"
        case .postgresql: "FALSE"
        }
    }

    /// A column in a filter whose index exists for sorting only. SQLite has no statistics unless someone
    /// runs `ANALYZE`, and without them it takes an equality index on a column of a handful of values
    /// (status, visibility, formats) for `col IN (…)`, then sorts every matching row: 60–1000 ms for a
    /// filtered or non-admin page at 100k images. A unary `+` keeps the filter off that index, so the plan
    /// walks the sort key's index and stops after `LIMIT` rows, whatever the data. PostgreSQL keeps
    /// statistics itself (and has no unary `+` on text).
    func sortOnly(_ column: String) -> String {
        switch self {
        case .sqlite: "+\(column)"
        case .postgresql: column
        }
    }

    /// ORDER BY direction. SQLite puts NULLs first ascending and last descending; PostgreSQL does the
    /// opposite by default, so it is told SQLite's placement (its indexes are built NULLS FIRST to match).
    func order(_ direction: SortDirection) -> String {
        switch (self, direction) {
        case (.sqlite, .asc): "ASC"
        case (.sqlite, .desc): "DESC"
        case (.postgresql, .asc): "ASC NULLS FIRST"
        case (.postgresql, .desc): "DESC NULLS LAST"
        }
    }

    /// The text with each `?` numbered as PostgreSQL wants (`$1`, `$2`…). Only for SQL we write ourselves,
    /// which never has a `?` inside a literal.
    func placeholders(_ sql: String) -> String {
        guard self == .postgresql else { return sql }
        var result = ""
        result.reserveCapacity(sql.utf8.count + 16)
        var index = 0
        for character in sql {
            if character == "?" {
                index += 1
                result += "$\(index)"
            } else {
                result.append(character)
            }
        }
        return result
    }
}

/// The SELECT for one page of `list`: filters, keyset condition after the marker, ORDER BY, LIMIT.
/// Mirrors `ImageListQuery.matches` filter for filter; the conformance suite checks every repository agrees.
/// `?` placeholders; `SQLDialect.placeholders` numbers them for PostgreSQL.
struct ListSQL {
    private(set) var text = ""
    private(set) var arguments: [SQLValue] = []
    private var conditions: [String] = []
    private let dialect: SQLDialect

    /// - Parameter markerValues: the marker image's values for each of `query.effectiveSortKeys`.
    init(_ query: ImageListQuery, markerValues: [SQLValue]?, columns: String, dialect: SQLDialect) {
        self.dialect = dialect
        let query = query.normalizedForStorage
        if let viewer = query.viewer { addVisibility(viewer) }
        if let ids = query.ids { whereIn("id", ids, nilMatchesEmpty: false) }
        // `matches` compares `name ?? ""`: an empty string in the set also matches a NULL column.
        if let names = query.names { whereIn("name", names, nilMatchesEmpty: true) }
        if let statuses = query.statuses { whereIn("status", statuses, nilMatchesEmpty: false) }
        if let formats = query.diskFormats { whereIn("disk_format", formats, nilMatchesEmpty: true) }
        if let formats = query.containerFormats { whereIn("container_format", formats, nilMatchesEmpty: true) }
        if let visibilities = query.visibilities { whereIn("visibility", visibilities, nilMatchesEmpty: false) }
        if let owner = query.owner { add("owner = ?", [.text(owner)]) }
        for tag in Set(query.tags).sorted() {
            add("EXISTS (SELECT 1 FROM image_tags WHERE image_tags.image_id = images.id AND image_tags.tag = ?)", [.text(tag)])
        }
        // A NULL size fails both comparisons, as in `matches`.
        if let sizeMin = query.sizeMin { add("size >= ?", [.integer(sizeMin)]) }
        if let sizeMax = query.sizeMax { add("size <= ?", [.integer(sizeMax)]) }
        if let osHidden = query.osHidden { add("os_hidden = ?", [.bool(osHidden)]) }
        if let isProtected = query.isProtected { add("protected = ?", [.bool(isProtected)]) }
        if let filter = query.createdAtFilter { add("created_at \(filter.op.sql) ?", [.real(filter.date.timeIntervalSince1970)]) }
        if let filter = query.updatedAtFilter { add("updated_at \(filter.op.sql) ?", [.real(filter.date.timeIntervalSince1970)]) }
        for (name, value) in query.properties.sorted(by: { $0.key < $1.key }) {
            add(
                "EXISTS (SELECT 1 FROM image_properties WHERE image_properties.image_id = images.id "
                    + "AND image_properties.name = ? AND image_properties.value = ?)", [.text(name), .text(value)])
        }
        let keys = query.effectiveSortKeys
        if let markerValues { addKeyset(keys, markerValues) }

        text = "SELECT \(columns) FROM images"
        if !conditions.isEmpty { text += " WHERE " + conditions.joined(separator: " AND ") }
        text += " ORDER BY " + keys.map { "\($0.key.column) \(dialect.order($0.direction))" }.joined(separator: ", ")
        text += " LIMIT ?"
        arguments.append(.integer(Int64(max(0, query.limit))))  // a negative LIMIT means "no limit" to SQLite
        text = dialect.placeholders(text)
    }

    /// Columns with a few distinct values: their indexes serve `ORDER BY`, never a filter (`SQLDialect.sortOnly`).
    private static let lowCardinality: Set<String> = ["status", "visibility", "disk_format", "container_format"]

    private mutating func add(_ condition: String, _ values: [SQLValue] = []) {
        conditions.append(condition)
        arguments += values
    }

    /// `ImageViewer.lists` in SQL. `owner = ?` is never true for a NULL owner, as `owns` never is.
    private mutating func addVisibility(_ viewer: ImageViewer) {
        if !viewer.includesOthersCommunity {
            if let project = viewer.project {
                add("(visibility <> 'community' OR owner = ?)", [.text(project)])
            } else {
                add("visibility <> 'community'")
            }
        }
        guard !viewer.isAdmin else { return }
        let visibility = dialect.sortOnly("visibility")
        guard let project = viewer.project else { return add("\(visibility) IN ('public', 'community')") }
        var membership = "m.image_id = images.id AND m.member_id = ?"
        var values: [SQLValue] = [.text(project), .text(project)]
        if let status = viewer.memberStatus {
            membership += " AND m.status = ?"
            values.append(.text(status.rawValue))
        }
        add(
            "(\(visibility) IN ('public', 'community') OR owner = ? OR (\(visibility) = 'shared' AND EXISTS "
                + "(SELECT 1 FROM image_members m WHERE \(membership))))", values)
    }

    private mutating func whereIn(_ column: String, _ values: Set<String>, nilMatchesEmpty: Bool) {
        guard !values.isEmpty else { return add(dialect.never) }
        let column = Self.lowCardinality.contains(column) ? dialect.sortOnly(column) : column
        let placeholders = Array(repeating: "?", count: values.count).joined(separator: ", ")
        // Spelled out rather than COALESCE(column, '') so an index on the column stays usable.
        let nullClause = nilMatchesEmpty && values.contains("") ? " OR \(column) IS NULL" : ""
        add("(\(column) IN (\(placeholders))\(nullClause))", values.sorted().map(SQLValue.text))
    }

    /// Rows strictly after the marker in the sort order k1..kn:
    /// OR over i of (k1 = m1 AND … AND k(i-1) = m(i-1) AND ki after mi), where "after" follows SQLite's
    /// NULL placement (first ascending, last descending; PostgreSQL is told the same). A redundant bound on
    /// k1 alone comes first so the engine can seek in k1's index instead of scanning up to the marker.
    private mutating func addKeyset(_ keys: [ImageListQuery.SortSpec], _ marker: [SQLValue]) {
        var disjuncts: [(sql: String, values: [SQLValue])] = []
        var equalities: [String] = []
        var equalityValues: [SQLValue] = []
        for (spec, value) in zip(keys, marker) {
            let column = spec.key.column
            let after: (String, [SQLValue])? =
                switch (spec.direction, value.isNull) {
                case (.asc, true): ("\(column) IS NOT NULL", [])
                case (.asc, false): ("\(column) > ?", [value])
                case (.desc, true): nil  // NULLs are last: nothing comes after a NULL in this key
                case (.desc, false): spec.key.isNullable ? ("(\(column) < ? OR \(column) IS NULL)", [value]) : ("\(column) < ?", [value])
                }
            if let (sql, values) = after {
                disjuncts.append(((equalities + [sql]).joined(separator: " AND "), equalityValues + values))
            }
            if value.isNull {
                equalities.append("\(column) IS NULL")
            } else {
                equalities.append("\(column) = ?")
                equalityValues.append(value)
            }
        }
        if let first = keys.first, let value = marker.first, !value.isNull {
            switch first.direction {
            case .asc: add("\(first.key.column) >= ?", [value])
            case .desc where !first.key.isNullable: add("\(first.key.column) <= ?", [value])
            case .desc: break  // "<= m OR IS NULL" would not narrow the index range
            }
        }
        guard !disjuncts.isEmpty else { return add(dialect.never) }
        add("(" + disjuncts.map { "(\($0.sql))" }.joined(separator: " OR ") + ")", disjuncts.flatMap(\.values))
    }
}

extension TimeComparison {
    fileprivate var sql: String {
        switch self {
        case .gt: ">"
        case .gte: ">="
        case .eq: "="
        case .neq: "<>"
        case .lt: "<"
        case .lte: "<="
        }
    }
}
