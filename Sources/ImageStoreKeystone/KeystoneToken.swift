import Foundation
import ImageStorePolicy

/// The parts of a Keystone v3 token document (`{"token": {…}}`) ImageStore uses.
struct KeystoneTokenDocument: Decodable {
    struct Reference: Decodable {
        var id: String?
        var name: String?
        var domain: Domain?
    }

    struct Domain: Decodable {
        var id: String?
        var name: String?
    }

    struct Role: Decodable {
        var name: String
    }

    struct Service: Decodable {
        var type: String
        var endpoints: [Endpoint]
    }

    struct Endpoint: Decodable {
        var interface: String
        var url: String
        var region: String?
        var region_id: String?
    }

    struct Token: Decodable {
        var expires_at: String
        var user: Reference?
        var project: Reference?
        var domain: Domain?
        var system: [String: Bool]?
        var roles: [Role]?
        var catalog: [Service]?
    }

    var token: Token

    /// Keystone writes `2025-01-31T12:00:00.000000Z`; older releases without fractions.
    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        // Microseconds: ISO8601DateFormatter reads at most milliseconds on some platforms.
        if let dot = text.firstIndex(of: "."), text.hasSuffix("Z") {
            let fraction = text[text.index(after: dot)..<text.index(before: text.endIndex)]
            guard let whole = formatter.date(from: String(text[..<dot]) + "Z"), let value = Double("0." + fraction) else { return nil }
            return whole.addingTimeInterval(value)
        }
        return nil
    }

    func validated() throws -> ValidatedToken {
        guard let expires = Self.date(token.expires_at) else {
            throw KeystoneProtocolError("token expires_at \(token.expires_at) is not a date")
        }
        let identity = RequestIdentity(
            userID: token.user?.id, userName: token.user?.name, userDomainID: token.user?.domain?.id,
            projectID: token.project?.id, projectName: token.project?.name, projectDomainID: token.project?.domain?.id,
            domainID: token.project == nil ? token.domain?.id : nil, systemScope: token.system?["all"] == true ? "all" : nil,
            roles: (token.roles ?? []).map(\.name))
        return ValidatedToken(identity: identity, expiresAt: expires)
    }

    /// The identity service's URL for `interface` (and `region`, when given) in the catalog.
    func identityEndpoint(interface: String, region: String?) -> String? {
        let endpoints = (token.catalog ?? []).filter { $0.type == "identity" }.flatMap(\.endpoints)
        return endpoints.first { endpoint in
            endpoint.interface == interface && (region == nil || endpoint.region_id == region || endpoint.region == region)
        }?.url
    }
}

/// Keystone answered something ImageStore cannot read.
struct KeystoneProtocolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
