import Foundation
import ImageStoreCore

/// An independent oracle for `list`: `ImageListQuery.matches` (the documented filter semantics), then
/// SQLite's ordering written out plainly (NULL lowest, text by UTF-8 bytes, id appended in the last
/// key's direction), the marker as "strictly after", and the limit.
enum ReferenceList {
    enum Value: Comparable {
        case null
        case number(Double)
        case bytes([UInt8])

        static func < (lhs: Value, rhs: Value) -> Bool {
            switch (lhs, rhs) {
            case (.null, .null): false
            case (.null, _): true
            case (_, .null): false
            case let (.number(a), .number(b)): a < b
            case let (.bytes(a), .bytes(b)): a.lexicographicallyPrecedes(b)
            default: fatalError("mixed kinds")
            }
        }
    }

    static func value(_ key: ImageSortKey, _ image: Image) -> Value {
        func text(_ s: String?) -> Value { s.map { .bytes(Array($0.utf8)) } ?? .null }
        func number(_ n: Int64?) -> Value { n.map { .number(Double($0)) } ?? .null }
        return switch key {
        case .name: text(image.name)
        case .status: text(image.status.rawValue)
        case .id: text(image.id.description)
        case .size: number(image.size)
        case .containerFormat: text(image.containerFormat)
        case .diskFormat: text(image.diskFormat)
        case .createdAt: .number(image.createdAt.timeIntervalSince1970)
        case .updatedAt: .number(image.updatedAt.timeIntervalSince1970)
        case .visibility: text(image.visibility.rawValue)
        case .owner: text(image.owner)
        case .minDisk: number(Int64(image.minDisk))
        case .minRam: number(Int64(image.minRam))
        }
    }

    static func sortKeys(_ query: ImageListQuery) -> [ImageListQuery.SortSpec] {
        var keys: [ImageListQuery.SortSpec] = []
        for spec in query.sortKeys where !keys.contains(where: { $0.key == spec.key }) { keys.append(spec) }
        if let id = keys.firstIndex(where: { $0.key == .id }) {
            keys.removeSubrange((id + 1)...)
        } else {
            keys.append(.init(key: .id, direction: keys.last?.direction ?? .asc))
        }
        return keys
    }

    static func before(_ a: Image, _ b: Image, _ keys: [ImageListQuery.SortSpec]) -> Bool {
        for spec in keys {
            let x = value(spec.key, a), y = value(spec.key, b)
            if x == y { continue }
            return spec.direction == .asc ? x < y : y < x
        }
        return false
    }

    /// Returns nil when the marker does not name an image (the repositories throw `.badRequest`).
    static func list(_ all: [Image], _ query: ImageListQuery, members: [ImageID: [ImageMember]] = [:]) -> [Image]? {
        let keys = sortKeys(query)
        var candidates = all.filter { query.matches($0, members: members[$0.id] ?? []) }
        if let marker = query.marker {
            guard let markerImage = all.first(where: { $0.id == marker }) else { return nil }
            candidates = candidates.filter { before(markerImage, $0, keys) }
        }
        return Array(candidates.sorted { before($0, $1, keys) }.prefix(max(0, query.limit)))
    }
}

extension Fixtures {
    /// Memberships for `images`: each shared-or-not image gets 0–3 of the projects alice, bob, carol
    /// (owners included, as nothing stops an owner from being listed as a member), in random statuses.
    static func members(for images: [Image], seed: UInt64 = 5) -> [ImageMember] {
        var rng = SeededGenerator(state: seed)
        var result: [ImageMember] = []
        for image in images {
            for project in ["alice", "bob", "carol"] where rng.next() % 3 == 0 {
                let status = MemberStatus.allCases[Int(rng.next() % 3)]
                result.append(
                    ImageMember(imageID: image.id, memberID: project, status: status, createdAt: base.addingTimeInterval(Double(rng.next() % 5))))
            }
        }
        return result
    }
}

/// A deterministic generator (SplitMix64), so a failing data set can be reproduced.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func hex(_ value: UInt64, _ width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

enum Fixtures {
    static let base = Date(timeIntervalSince1970: 1_700_000_000.125)

    /// `count` images with many ties and NULLs in every sort key, so ordering and paging are exercised
    /// where they are hard: equal keys broken by id, NULLs first ascending and last descending.
    static func images(count: Int, seed: UInt64 = 42) -> [Image] {
        var rng = SeededGenerator(state: seed)
        func pick<T>(_ options: [T]) -> T { options[Int(rng.next() % UInt64(options.count))] }
        return (0..<count).map { i in
            // Multiplying by an odd constant mod 2^32 is a bijection: unique ids, in an order unrelated to i.
            let scrambled = (UInt64(i) &* 2_654_435_761) & 0xFFFF_FFFF
            let id = ImageID("\(hex(scrambled, 8))-0000-4000-8000-\(hex(rng.next() & 0xFFFF_FFFF_FFFF, 12))")!
            let created = base.addingTimeInterval(Double(pick([0, 1, 2, 3, 4, 5])) + pick([0, 0.25, 0.001]))
            return Image(
                id: id, name: pick(["alpha", "beta", "Beta", "gamma", nil, "", "\u{e9}t\u{e9}", "zeta"]),
                status: pick([.queued, .saving, .active, .active, .killed, .deleted, .deactivated]),
                visibility: pick(ImageVisibility.allCases), isProtected: pick([false, false, true]),
                osHidden: pick([false, false, false, true]), checksum: pick([nil, "abc"]),
                size: pick([nil, 0, 10, 10, 100, 1_000, 1 << 40]), virtualSize: pick([nil, 5]),
                diskFormat: pick([nil, "raw", "qcow2", "iso"]), containerFormat: pick([nil, "bare", "ovf"]),
                minDisk: pick([0, 1, 2]), minRam: pick([0, 512, 1024]), owner: pick([nil, "alice", "bob"]),
                createdAt: created, updatedAt: created.addingTimeInterval(pick([0, 1, 10])),
                tags: pick([[], ["a"], ["b"], ["a", "b"], ["a", "b", "c"]]),
                properties: pick([[:], ["hw_disk_bus": "scsi"], ["hw_disk_bus": "virtio"], ["hw_disk_bus": "scsi", "os_distro": "debian"]]),
                uploadOwner: nil)
        }
    }
}
