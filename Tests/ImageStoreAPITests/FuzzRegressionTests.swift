import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreTestSupport
import Testing

/// Inputs the schemathesis run (Tests/clients/test_schemathesis.py) or probing around it found to
/// crash or misanswer the server, pinned here so they stay fixed.
@Suite struct FuzzRegressionTests {
    /// `sort=:` used to index past the pieces `split` had dropped and crash the whole process.
    @Test(arguments: [":", ":asc", ",", "name,", "name:asc,,created_at", " : "])
    func list_sortWithEmptyKey_is400_andTheServerStaysUp(sort: String) async throws {
        try await APITestHarness().run { client in
            let query = sort.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? sort
            let (response, body) = try await client.json("/v2/images?sort=\(query)", method: .get)
            #expect(response.status == .badRequest, "sort=\(sort)")
            #expect(body?["error"]?["message"]?.stringValue?.hasPrefix("Invalid sort key") == true, "\(String(describing: body))")
            let (after, _) = try await client.json("/v2/images", method: .get)
            #expect(after.status == .ok)
        }
    }

    /// Glance's `partition(':')`: an empty direction is the default (desc).
    @Test func list_sortWithEmptyDirection_sortsDescending() async throws {
        try await APITestHarness().run { client in
            for name in ["a", "c", "b"] { _ = try await client.createImage(#"{"name": "\#(name)"}"#) }
            let (response, body) = try await client.json("/v2/images?sort=name:", method: .get)
            #expect(response.status == .ok)
            #expect(body?["images"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["c", "b", "a"])
        }
    }
}
