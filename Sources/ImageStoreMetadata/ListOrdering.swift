import Foundation
import ImageStoreCore

// What both repositories share so they list identically: how dates are stored, which sort keys
// are effective, and how two images compare in a sort order (SQLite's rules, reproduced in Swift).

/// Dates are stored as REAL unix seconds (sub-microsecond precision, readable with `datetime(x, 'unixepoch')`).
/// Going through `timeIntervalSince1970` can move a `Date` by one ulp, so both repositories store the
/// value that survives that round trip: then the in-memory repository holds exactly what SQLite would,
/// and ordering, ties and time filters agree. (Idempotent: normalizing twice changes nothing.)
enum StoredDate {
    static func normalized(_ date: Date) -> Date { Date(timeIntervalSince1970: date.timeIntervalSince1970) }
}

/// A record with creation and modification dates, stored as `StoredDate` does.
protocol StoredTimestamps {
    var createdAt: Date { get set }
    var updatedAt: Date { get set }
}

extension StoredTimestamps {
    /// The record as a repository stores it: dates normalized (an image's tags are already sorted and unique).
    var normalizedForStorage: Self {
        var copy = self
        copy.createdAt = StoredDate.normalized(createdAt)
        copy.updatedAt = StoredDate.normalized(updatedAt)
        return copy
    }
}

extension Image: StoredTimestamps {}

extension ImageMember: StoredTimestamps {
    /// The order `members(of:)` returns: oldest first, member id breaking ties.
    static func storageOrder(_ a: ImageMember, _ b: ImageMember) -> Bool {
        a.createdAt != b.createdAt ? a.createdAt < b.createdAt : Array(a.memberID.utf8).lexicographicallyPrecedes(b.memberID.utf8)
    }
}

extension ImageListQuery {
    /// The sort order actually applied: the requested keys up to the first `id` (nothing after a unique
    /// key matters), a repeated key dropped (it is already equal when reached again), then `id` as the
    /// final tie-breaker in the direction of the last key (ascending when there are none). A total order
    /// is what keyset pagination needs.
    var effectiveSortKeys: [SortSpec] {
        var result: [SortSpec] = []
        for spec in sortKeys where !result.contains(where: { $0.key == spec.key }) {
            result.append(spec)
            if spec.key == .id { return result }
        }
        result.append(SortSpec(key: .id, direction: result.last?.direction ?? .asc))
        return result
    }

    /// The query with its time-filter dates normalized as stored dates are, so comparisons in Swift
    /// agree with comparisons of the stored REAL values.
    var normalizedForStorage: ImageListQuery {
        var copy = self
        if let filter = createdAtFilter { copy.createdAtFilter?.date = StoredDate.normalized(filter.date) }
        if let filter = updatedAtFilter { copy.updatedAtFilter?.date = StoredDate.normalized(filter.date) }
        return copy
    }
}

/// One sort-key value, compared the way SQLite compares column values: NULL before everything,
/// numbers numerically, text by its UTF-8 bytes (BINARY collation) rather than by Swift's canonical
/// equivalence, so both repositories order (and tie) the same strings identically.
enum SortValue: Comparable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)

    static func == (lhs: SortValue, rhs: SortValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case let (.integer(a), .integer(b)): a == b
        case let (.real(a), .real(b)): a == b
        case let (.text(a), .text(b)): a.utf8.elementsEqual(b.utf8)
        default: false
        }
    }

    static func < (lhs: SortValue, rhs: SortValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): false
        case (.null, _): true
        case (_, .null): false
        case let (.integer(a), .integer(b)): a < b
        case let (.real(a), .real(b)): a < b
        case let (.text(a), .text(b)): a.utf8.lexicographicallyPrecedes(b.utf8)
        // One key always yields one kind of value: mixed kinds do not occur.
        default: false
        }
    }
}

extension ImageSortKey {
    /// Column of the `images` table holding this key.
    var column: String {
        switch self {
        case .name: "name"
        case .status: "status"
        case .id: "id"
        case .size: "size"
        case .containerFormat: "container_format"
        case .diskFormat: "disk_format"
        case .createdAt: "created_at"
        case .updatedAt: "updated_at"
        case .visibility: "visibility"
        case .owner: "owner"
        case .minDisk: "min_disk"
        case .minRam: "min_ram"
        }
    }

    /// Whether the column can hold NULL (shapes the keyset condition, see `SQLiteImageRepository`).
    var isNullable: Bool {
        switch self {
        case .name, .size, .containerFormat, .diskFormat, .owner: true
        case .status, .id, .createdAt, .updatedAt, .visibility, .minDisk, .minRam: false
        }
    }

    /// The image's value for this key, as SQLite holds it.
    func value(of image: Image) -> SortValue {
        switch self {
        case .name: image.name.map(SortValue.text) ?? .null
        case .status: .text(image.status.rawValue)
        case .id: .text(image.id.description)
        case .size: image.size.map(SortValue.integer) ?? .null
        case .containerFormat: image.containerFormat.map(SortValue.text) ?? .null
        case .diskFormat: image.diskFormat.map(SortValue.text) ?? .null
        case .createdAt: .real(image.createdAt.timeIntervalSince1970)
        case .updatedAt: .real(image.updatedAt.timeIntervalSince1970)
        case .visibility: .text(image.visibility.rawValue)
        case .owner: image.owner.map(SortValue.text) ?? .null
        case .minDisk: .integer(Int64(image.minDisk))
        case .minRam: .integer(Int64(image.minRam))
        }
    }
}

extension Array where Element == ImageListQuery.SortSpec {
    /// Whether `lhs` comes strictly before `rhs` in this order. SQLite's ORDER BY puts NULLs first
    /// when ascending and last when descending; `SortValue` ranking NULL lowest gives exactly that.
    func orders(_ lhs: Image, before rhs: Image) -> Bool {
        for spec in self {
            let a = spec.key.value(of: lhs)
            let b = spec.key.value(of: rhs)
            if a == b { continue }
            return spec.direction == .asc ? a < b : b < a
        }
        return false
    }
}
