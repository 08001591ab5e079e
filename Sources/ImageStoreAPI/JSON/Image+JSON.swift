import Logging
import Foundation
import ImageStoreCore

extension Image {
    /// The Glance v2 image document (`_format_image`): every base field always present (null when
    /// unset), custom properties as top-level strings, and the self/file/schema links.
    /// - Parameter stores: the stores, when images say where they are (`stores`); nil: not shown.
    /// - Parameter locations: `show_image_direct_url` / `show_multiple_locations`; nil: neither shown.
    func glanceJSON(stores: ImageStores?, locations: LocationView? = nil) -> JSONValue {
        var doc: [String: JSONValue] = [:]
        doc.reserveCapacity(properties.count + 26)
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
        locations?.add(to: &doc, for: self)
        return .object(doc)
    }
}

/// Glance's `direct_url` and `locations` (read-only), as Nova and Cinder read them: `file://` URLs of the
/// image's copies, with `{"store": id}` metadata when `enabled_backends` is set (glance_store's
/// filesystem driver adds it only then).
struct LocationView: Sendable {
    let stores: ImageStores
    /// Each store's `filesystem_store_datadir`.
    let datadirs: [String: String]
    let showDirectURL: Bool
    let showLocations: Bool

    func url(of image: Image, in store: String) -> String? {
        guard var datadir = datadirs[store] else { return nil }
        while datadir.count > 1 && datadir.hasSuffix("/") { datadir.removeLast() }
        return "file://\(datadir)/\(image.id)"
    }

    func add(to doc: inout [String: JSONValue], for image: Image) {
        // Copies as recorded (the order they were made); a store no longer configured has no URL to give.
        let held = image.hasData ? stores.locations(of: image) : []
        if showLocations {
            doc["locations"] = .array(
                held.compactMap { store in
                    url(of: image, in: store).map { url -> JSONValue in
                        ["url": .string(url), "metadata": stores.isMultiStore ? ["store": .string(store)] : [:]]
                    }
                })
        }
        // The best copy, as Glance's sort_image_locations: the highest store weight.
        if showDirectURL, image.hasData, let best = stores.readOrder(of: image).first, let url = url(of: image, in: best.id) {
            doc["direct_url"] = .string(url)
        }
    }
}

/// Glance's `timeutils.isotime`: seconds precision, `Z`.
enum GlanceTime {
    static func format(_ date: Date) -> String {
        // gmtime_r and fixed-width digits: the FormatStyle took microseconds, twice per image shown.
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil, (1000...9999).contains(Int(parts.tm_year) + 1900) else {
            return date.formatted(
                .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon)
                    .timeZone(separator: .omitted))
        }
        return String(unsafeUninitializedCapacity: 20) { out in
            func put(_ value: Int32, _ width: Int, at start: Int) {
                var value = Int(value)
                for index in stride(from: start + width - 1, through: start, by: -1) {
                    out[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(parts.tm_year + 1900, 4, at: 0)
            out[4] = UInt8(ascii: "-")
            put(parts.tm_mon + 1, 2, at: 5)
            out[7] = UInt8(ascii: "-")
            put(parts.tm_mday, 2, at: 8)
            out[10] = UInt8(ascii: "T")
            put(parts.tm_hour, 2, at: 11)
            out[13] = UInt8(ascii: ":")
            put(parts.tm_min, 2, at: 14)
            out[16] = UInt8(ascii: ":")
            put(parts.tm_sec, 2, at: 17)
            out[19] = UInt8(ascii: "Z")
            return 20
        }
    }

    /// Accepts ISO 8601 with or without fractional seconds and zone (Glance filter values).
    static func parse(_ text: String) -> Date? {
        if let d = try? Date(text, strategy: .iso8601) { return d }
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        if let d = try? Date(text + "Z", strategy: .iso8601) { return d }
        return nil
    }
}
