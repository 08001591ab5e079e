import Logging
import Foundation
import ImageStoreCore

extension Image {
    /// The Glance v2 image document (`_format_image`): every base field always present (null when
    /// unset), custom properties as top-level strings, and the self/file/schema links.
    /// - Parameter stores: the stores, when images say where they are (`stores`); nil: not shown.
    func glanceJSON(stores: ImageStores?) -> JSONValue {
        var doc: [String: JSONValue] = [:]
        // Where the data is, is ours to keep (and shown as `stores`), never a custom property.
        for (key, value) in properties where key != ImageStores.locationsProperty { doc[key] = .string(value) }
        doc["id"] = .string(id.description)
        doc["name"] = JSONValue(name)
        doc["status"] = .string(status.rawValue)
        doc["visibility"] = .string(visibility.rawValue)
        doc["protected"] = .bool(isProtected)
        doc["os_hidden"] = .bool(osHidden)
        doc["checksum"] = JSONValue(checksum)
        doc["os_hash_algo"] = JSONValue(osHashAlgo)
        doc["os_hash_value"] = JSONValue(osHashValue)
        doc["size"] = JSONValue(size)
        doc["virtual_size"] = JSONValue(virtualSize)
        doc["disk_format"] = JSONValue(diskFormat)
        doc["container_format"] = JSONValue(containerFormat)
        doc["min_disk"] = .int(Int64(minDisk))
        doc["min_ram"] = .int(Int64(minRam))
        doc["owner"] = JSONValue(owner)
        doc["created_at"] = .string(GlanceTime.format(createdAt))
        doc["updated_at"] = .string(GlanceTime.format(updatedAt))
        doc["tags"] = .array(tags.map { .string($0) })
        doc["self"] = .string("/v2/images/\(id)")
        doc["file"] = .string("/v2/images/\(id)/file")
        doc["schema"] = "/v2/schemas/image"
        // Multi-store: the stores holding the data, comma-separated, as Glance shows it with enabled_backends.
        if let stores, hasData { doc["stores"] = .string(stores.locations(of: self).joined(separator: ",")) }
        return .object(doc)
    }
}

/// Glance's `timeutils.isotime`: seconds precision, `Z`.
enum GlanceTime {
    static func format(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon).timeZone(separator: .omitted))
    }

    /// Accepts ISO 8601 with or without fractional seconds and zone (Glance filter values).
    static func parse(_ text: String) -> Date? {
        if let d = try? Date(text, strategy: .iso8601) { return d }
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        if let d = try? Date(text + "Z", strategy: .iso8601) { return d }
        return nil
    }
}
