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
    public var description: String { uuid.uuidString.lowercased() }

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
