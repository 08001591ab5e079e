import Logging
import Foundation
import ImageStoreCore

/// Parses `GET /v2/images` query parameters into an `ImageListQuery`, with Glance's 400s.
struct ImageListParameters {
    static let defaultLimit = 25
    static let maxLimit = 1000

    /// Raw `key=value` pairs in request order (percent-decoded), for repeated keys and links.
    let pairs: [(key: String, value: String)]

    init(rawQuery: String?) {
        pairs = (rawQuery ?? "").split(separator: "&").compactMap { part in
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let rawKey = kv.first, !rawKey.isEmpty else { return nil }
            let key = Self.decode(rawKey)
            let value = kv.count > 1 ? Self.decode(kv[1]) : ""
            return (key, value)
        }
    }

    static func decode(_ s: Substring) -> String {
        let plusDecoded = s.replacingOccurrences(of: "+", with: " ")
        return plusDecoded.removingPercentEncoding ?? plusDecoded
    }

    private func values(_ key: String) -> [String] { pairs.filter { $0.key == key }.map(\.value) }
    private func value(_ key: String) -> String? { values(key).last }

    func query(defaultOwnerFilter: String? = nil) throws -> ImageListQuery {
        var query = ImageListQuery()
        if let limitText = value("limit") {
            guard let limit = Int(limitText) else { throw ImageStoreError.badRequest("limit param must be an integer") }
            guard limit >= 0 else { throw ImageStoreError.badRequest("limit param must be positive") }
            query.limit = min(limit, Self.maxLimit)
        } else {
            query.limit = Self.defaultLimit
        }
        if let markerText = value("marker") {
            guard let marker = ImageID(markerText) else {
                throw ImageStoreError.badRequest("marker \(markerText) could not be found.")
            }
            query.marker = marker
        }
        query.sortKeys = try sort()
        if value("changes-since") != nil {
            throw ImageStoreError.badRequest("The 'changes-since' filter is no longer available on v2.")
        }

        query.ids = try setFilter("id")
        query.names = try setFilter("name")
        query.statuses = try setFilter("status")
        query.diskFormats = try setFilter("disk_format")
        query.containerFormats = try setFilter("container_format")
        if let visibility = value("visibility") {
            guard visibility == "all" || ImageVisibility(rawValue: visibility) != nil else {
                throw ImageStoreError.badRequest("Invalid visibility value: \(visibility)")
            }
            if visibility != "all" { query.visibilities = [visibility] }
        }
        if let statuses = query.statuses {
            for status in statuses where ImageStatus(rawValue: status) == nil {
                throw ImageStoreError.badRequest("Invalid status value: \(status)")
            }
        }
        query.owner = value("owner") ?? defaultOwnerFilter
        query.tags = values("tag")
        query.sizeMin = try int64("size_min")
        query.sizeMax = try int64("size_max")
        query.osHidden = try bool("os_hidden") ?? false
        query.isProtected = try bool("protected")
        query.createdAtFilter = try timeFilter("created_at")
        query.updatedAtFilter = try timeFilter("updated_at")
        if let memberStatus = value("member_status"), !["pending", "accepted", "rejected", "all"].contains(memberStatus) {
            throw ImageStoreError.badRequest("Invalid status: \(memberStatus)")
        }
        // Anything else is a custom property filter, as in Glance.
        for (key, value) in pairs where !Self.knownParameters.contains(key) {
            query.properties[key] = value
        }
        return query
    }

    /// `member_status` (default `accepted`; `all` means any status → nil), already validated by `query()`.
    func memberStatus() throws -> MemberStatus? {
        guard let text = value("member_status") else { return .accepted }
        if text == "all" { return nil }
        guard let status = MemberStatus(rawValue: text) else { throw ImageStoreError.badRequest("Invalid status: \(text)") }
        return status
    }

    /// Whether a `visibility` filter was given (then other projects' community images are listed too).
    var hasVisibilityFilter: Bool { value("visibility") != nil }

    static let knownParameters: Set<String> = [
        "limit", "marker", "sort_key", "sort_dir", "sort", "id", "name", "status", "disk_format", "container_format",
        "visibility", "owner", "tag", "size_min", "size_max", "os_hidden", "protected", "created_at", "updated_at",
        "member_status", "changes-since",
    ]

    /// `in:a,b,"c,d"` → set; plain value → single-element set.
    private func setFilter(_ key: String) throws -> Set<String>? {
        guard let raw = value(key) else { return nil }
        guard raw.hasPrefix("in:") else { return [raw] }
        var items: [String] = []
        var current = ""
        var quoted = false
        for ch in raw.dropFirst(3) {
            switch ch {
            case "\"": quoted.toggle()
            case "," where !quoted:
                items.append(current)
                current = ""
            default: current.append(ch)
            }
        }
        guard !quoted else { throw ImageStoreError.badRequest("Invalid in: filter for \(key): unbalanced quotes") }
        items.append(current)
        return Set(items)
    }

    private func int64(_ key: String) throws -> Int64? {
        guard let text = value(key) else { return nil }
        guard let number = Int64(text), number >= 0 else {
            throw ImageStoreError.badRequest("Invalid \(key) value: it must be a non-negative integer")
        }
        return number
    }

    private func bool(_ key: String) throws -> Bool? {
        guard let text = value(key) else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ImageStoreError.badRequest("Invalid value for \(key): \(text) is not a boolean")
        }
    }

    private func timeFilter(_ key: String) throws -> ImageListQuery.TimeFilter? {
        guard let text = value(key) else { return nil }
        var op = TimeComparison.eq
        var dateText = Substring(text)
        if let colon = text.firstIndex(of: ":"), let parsed = TimeComparison(rawValue: String(text[..<colon])) {
            op = parsed
            dateText = text[text.index(after: colon)...]
        }
        guard let date = GlanceTime.parse(String(dateText)) else {
            throw ImageStoreError.badRequest("Invalid \(key) value: \(text)")
        }
        return .init(op: op, date: date)
    }

    private func sort() throws -> [ImageListQuery.SortSpec] {
        let keys = values("sort_key")
        let dirs = values("sort_dir")
        let sortParam = value("sort")
        if sortParam != nil && (!keys.isEmpty || !dirs.isEmpty) {
            throw ImageStoreError.badRequest("The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.")
        }
        if let sortParam {
            // Glance's `key, _, dir = item.partition(':')`: empty items and keys are invalid keys (400),
            // an empty direction is the default. Keep the empty pieces: `sort=:` must not index past them.
            return try sortParam.split(separator: ",", omittingEmptySubsequences: false).map { item in
                let parts = item.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                let key = try sortKey(String(parts[0]).trimmingCharacters(in: .whitespaces))
                let dirText = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""
                return .init(key: key, direction: dirText.isEmpty ? .desc : try direction(dirText))
            }
        }
        if keys.isEmpty {
            guard dirs.count <= 1 else { throw ImageStoreError.badRequest("Number of sort dirs does not match the number of sort keys") }
            return [.init(key: .createdAt, direction: try dirs.first.map(direction) ?? .desc)]
        }
        guard dirs.count <= 1 || dirs.count == keys.count else {
            throw ImageStoreError.badRequest("Number of sort dirs does not match the number of sort keys")
        }
        return try keys.enumerated().map { index, key in
            let dir = dirs.isEmpty ? "desc" : (dirs.count == 1 ? dirs[0] : dirs[index])
            return .init(key: try sortKey(key), direction: try direction(dir))
        }
    }

    private func sortKey(_ text: String) throws -> ImageSortKey {
        guard let key = ImageSortKey(rawValue: text) else { throw ImageStoreError.badRequest("Invalid sort key: \(text).") }
        return key
    }

    private func direction(_ text: String) throws -> SortDirection {
        guard let dir = SortDirection(rawValue: text) else {
            throw ImageStoreError.badRequest("Invalid sort direction: \(text). It must be 'asc' or 'desc'.")
        }
        return dir
    }

    /// The raw query without `marker` (for `first`), and with a new marker (for `next`).
    func link(marker: ImageID?, rawQuery: String?) -> String {
        var parts = (rawQuery ?? "").split(separator: "&").filter { !$0.hasPrefix("marker=") && !$0.isEmpty }.map(String.init)
        if let marker { parts.append("marker=\(marker)") }
        return parts.isEmpty ? "/v2/images" : "/v2/images?" + parts.joined(separator: "&")
    }
}
