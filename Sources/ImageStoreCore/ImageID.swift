import Foundation

/// An image id: always a UUID. Anything else is "not found" at the API, and because only this
/// type's canonical lowercase text ever reaches a filesystem path, no request value can name a file.
public struct ImageID: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public let uuid: UUID

    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }

    /// Accepts the canonical 8-4-4-4-12 hex form only (either case), as Glance's id pattern does.
    public init?(_ text: some StringProtocol) {
        guard text.utf8.count == 36, let uuid = UUID(uuidString: String(text)) else { return nil }
        self.uuid = uuid
    }

    /// Canonical lowercase text, as Glance returns ids.
    public var description: String { uuid.lowercasedString }

    public static func < (lhs: ImageID, rhs: ImageID) -> Bool { lhs.description < rhs.description }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = ImageID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a UUID"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension UUID {
    /// The 8-4-4-4-12 text in lower case, written directly (`uuidString.lowercased()` made two strings,
    /// several times per request: ids in paths, links, SQL arguments, request ids).
    public var lowercasedString: String {
        let hex: StaticString = "0123456789abcdef"
        return withUnsafeBytes(of: uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { out in
                hex.withUTF8Buffer { digits in
                    var index = 0
                    for (offset, byte) in bytes.enumerated() {
                        if offset == 4 || offset == 6 || offset == 8 || offset == 10 {
                            out[index] = UInt8(ascii: "-")
                            index += 1
                        }
                        out[index] = digits[Int(byte >> 4)]
                        out[index + 1] = digits[Int(byte & 0x0f)]
                        index += 2
                    }
                }
                return 36
            }
        }
    }
}
