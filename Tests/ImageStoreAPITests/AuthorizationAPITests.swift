import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreTestSupport
import NIOCore
import Testing

/// Callers of Glance's secure-RBAC model, as noauth headers (`X-Project-Id`, `X-Roles`).
enum Persona: String, CaseIterable, CustomTestStringConvertible {
    /// No `X-Roles`: noauth's admin.
    case noauthAdmin
    case admin, member, reader, otherMember

    var testDescription: String { rawValue }

    var headers: HTTPFields {
        switch self {
        case .noauthAdmin: [:]
        case .admin: [.xProjectID: "proj-a", .xRoles: "admin", .xUserID: "u-admin"]
        case .member: [.xProjectID: "proj-a", .xRoles: "member,reader", .xUserID: "u-member"]
        case .reader: [.xProjectID: "proj-a", .xRoles: "reader", .xUserID: "u-reader"]
        case .otherMember: [.xProjectID: "proj-b", .xRoles: "member,reader", .xUserID: "u-other"]
        }
    }
}

extension HTTPField.Name {
    static let xProjectID = Self("X-Project-Id")!
    static let xRoles = Self("X-Roles")!
    static let xUserID = Self("X-User-Id")!
}

extension TestClientProtocol {
    /// One request as `persona`; the body's content type defaults to JSON.
    func call(
        _ persona: Persona, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil,
        contentType: String = "application/json"
    ) async throws -> TestResponse {
        var headers = persona.headers
        if body != nil { headers[.contentType] = contentType }
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    /// An image owned by proj-a, made by its member, with `visibility`; active with 4 bytes when `upload`.
    func imageOfProjectA(_ visibility: String = "private", upload: Bool = false, name: String = "img") async throws -> String {
        let response = try await call(
            .member, .post, "/v2/images",
            #"{"name": "\#(name)", "visibility": "\#(visibility)", "disk_format": "raw", "container_format": "bare"}"#)
        try #require(response.status == .created, "create answered \(response.status): \(response.text)")
        let id = try #require(response.jsonBody?["id"]?.stringValue)
        if upload {
            let put = try await call(.member, .put, "/v2/images/\(id)/file", "data", contentType: "application/octet-stream")
            try #require(put.status == .noContent)
        }
        return id
    }

    func listIDs(_ persona: Persona, _ query: String = "") async throws -> Set<String> {
        let response = try await call(persona, .get, "/v2/images" + query)
        try #require(response.status == .ok, "list answered \(response.status): \(response.text)")
        return Set(response.jsonBody?["images"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? [])
    }
}

/// Every image route × every persona on a private image of project A: what each may do, what is
/// 403 (visible but not allowed) and what is 404 (not visible at all).
@Suite struct AuthorizationAPITests {
    /// The answer each persona gets, in `Persona.allCases` order.
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let expected: [HTTPResponse.Status]
        let run: @Sendable (any TestClientProtocol, Persona, String) async throws -> TestResponse
        var testDescription: String { name }
    }

    static let patchType = "application/openstack-images-v2.1-json-patch"

    static let cases: [Case] = [
        Case(name: "GET image", expected: [.ok, .ok, .ok, .ok, .notFound]) { c, p, id in
            try await c.call(p, .get, "/v2/images/\(id)")
        },
        Case(name: "PATCH image", expected: [.ok, .ok, .ok, .forbidden, .notFound]) { c, p, id in
            try await c.call(p, .patch, "/v2/images/\(id)", #"[{"op": "replace", "path": "/name", "value": "x"}]"#, contentType: patchType)
        },
        Case(name: "DELETE image", expected: [.noContent, .noContent, .noContent, .forbidden, .notFound]) { c, p, id in
            try await c.call(p, .delete, "/v2/images/\(id)")
        },
        Case(name: "PUT file", expected: [.noContent, .noContent, .noContent, .forbidden, .notFound]) { c, p, id in
            try await c.call(p, .put, "/v2/images/\(id)/file", "abcd", contentType: "application/octet-stream")
        },
        Case(name: "GET file", expected: [.ok, .ok, .ok, .forbidden, .notFound]) { c, p, id in
            _ = try await c.call(.member, .put, "/v2/images/\(id)/file", "abcd", contentType: "application/octet-stream")
            return try await c.call(p, .get, "/v2/images/\(id)/file")
        },
        Case(name: "PUT tag", expected: [.noContent, .noContent, .noContent, .forbidden, .notFound]) { c, p, id in
            try await c.call(p, .put, "/v2/images/\(id)/tags/blue")
        },
        Case(name: "DELETE tag", expected: [.noContent, .noContent, .noContent, .forbidden, .notFound]) { c, p, id in
            _ = try await c.call(.member, .put, "/v2/images/\(id)/tags/blue")
            return try await c.call(p, .delete, "/v2/images/\(id)/tags/blue")
        },
        Case(name: "deactivate", expected: [.noContent, .noContent, .noContent, .forbidden, .notFound]) { c, p, id in
            _ = try await c.call(.member, .put, "/v2/images/\(id)/file", "abcd", contentType: "application/octet-stream")
            return try await c.call(p, .post, "/v2/images/\(id)/actions/deactivate")
        },
        Case(name: "reactivate", expected: [.noContent, .noContent, .noContent, .forbidden, .notFound]) { c, p, id in
            _ = try await c.call(.member, .put, "/v2/images/\(id)/file", "abcd", contentType: "application/octet-stream")
            _ = try await c.call(.member, .post, "/v2/images/\(id)/actions/deactivate")
            return try await c.call(p, .post, "/v2/images/\(id)/actions/reactivate")
        },
    ]

    @Test(arguments: cases)
    func privateImageOfProjectA_eachPersona(_ route: Case) async throws {
        try await APITestHarness().run { client in
            for (persona, expected) in zip(Persona.allCases, route.expected) {
                let id = try await client.imageOfProjectA()
                let response = try await route.run(client, persona, id)
                #expect(response.status == expected, "\(route.name) as \(persona): \(response.text)")
                // Denials never reveal more than "not found" / "not allowed", always as Glance's JSON error.
                if expected == .notFound || expected == .forbidden { #expect(response.errorMessage != nil) }
            }
        }
    }

    @Test func create_memberOwnProject_readerDenied_otherOwnerOnlyForAdmin() async throws {
        try await APITestHarness().run { client in
            let body = #"{"name": "n"}"#
            #expect(try await client.call(.member, .post, "/v2/images", body).jsonBody?["owner"] == "proj-a")
            #expect(try await client.call(.reader, .post, "/v2/images", body).status == .forbidden)
            let foreign = try await client.call(.member, .post, "/v2/images", #"{"owner": "proj-z"}"#)
            #expect(foreign.status == .forbidden)
            #expect(foreign.errorMessage?.contains("owned by 'proj-z'") == true)
            let byAdmin = try await client.call(.admin, .post, "/v2/images", #"{"owner": "proj-z"}"#)
            #expect(byAdmin.status == .created && byAdmin.jsonBody?["owner"] == "proj-z")
            // Publicizing is admin-only; community is for members too.
            #expect(try await client.call(.member, .post, "/v2/images", #"{"visibility": "public"}"#).status == .forbidden)
            #expect(try await client.call(.admin, .post, "/v2/images", #"{"visibility": "public"}"#).status == .created)
            #expect(try await client.call(.member, .post, "/v2/images", #"{"visibility": "community"}"#).status == .created)
        }
    }

    @Test func patch_visibilityAndOwner_followTheirRules() async throws {
        try await APITestHarness().run { client in
            let id = try await client.imageOfProjectA()
            func patch(_ persona: Persona, _ path: String, _ value: String) async throws -> TestResponse {
                try await client.call(
                    persona, .patch, "/v2/images/\(id)", #"[{"op": "replace", "path": "\#(path)", "value": "\#(value)"}]"#,
                    contentType: Self.patchType)
            }
            #expect(try await patch(.member, "/visibility", "public").status == .forbidden)
            #expect(try await patch(.member, "/visibility", "community").status == .ok)
            #expect(try await patch(.member, "/owner", "proj-b").status == .forbidden)
            #expect(try await patch(.admin, "/visibility", "public").status == .ok)
            #expect(try await patch(.admin, "/owner", "proj-b").status == .ok)
            // Now proj-b's: the former owner's member sees a public image it may no longer change.
            #expect(try await patch(.member, "/name", "mine").status == .forbidden)
            #expect(try await patch(.otherMember, "/name", "mine").status == .ok)
        }
    }

    @Test func visibility_publicCommunityPrivate_forAnotherProject() async throws {
        try await APITestHarness().run { client in
            let privateID = try await client.imageOfProjectA("private", upload: true)
            let publicID =
                try await client.call(
                    .admin, .post, "/v2/images", #"{"visibility": "public", "disk_format": "raw", "container_format": "bare"}"#
                ).jsonBody?["id"]?.stringValue ?? ""
            _ = try await client.call(.admin, .put, "/v2/images/\(publicID)/file", "data", contentType: "application/octet-stream")
            let communityID = try await client.imageOfProjectA("community", upload: true)
            let sharedID = try await client.imageOfProjectA("shared", upload: true)

            for id in [publicID, communityID] {
                #expect(try await client.call(.otherMember, .get, "/v2/images/\(id)").status == .ok)
                #expect(try await client.call(.otherMember, .get, "/v2/images/\(id)/file").text == "data")
                #expect(try await client.call(.otherMember, .delete, "/v2/images/\(id)").status == .forbidden)
            }
            for id in [privateID, sharedID] {
                #expect(try await client.call(.otherMember, .get, "/v2/images/\(id)").status == .notFound)
                #expect(try await client.call(.otherMember, .get, "/v2/images/\(id)/file").status == .notFound)
            }
            // Lists: community images of others only with a visibility filter; private and unshared never.
            #expect(try await client.listIDs(.otherMember) == [publicID])
            #expect(try await client.listIDs(.otherMember, "?visibility=community") == [communityID])
            #expect(try await client.listIDs(.otherMember, "?visibility=all") == [publicID, communityID])
            #expect(try await client.listIDs(.member) == [privateID, publicID, communityID, sharedID])
            #expect(try await client.listIDs(.reader, "?visibility=private") == [privateID])
            #expect(try await client.listIDs(.admin, "?visibility=all") == [privateID, publicID, communityID, sharedID])
            #expect(try await client.listIDs(.noauthAdmin).isSuperset(of: [privateID, publicID, sharedID]))
        }
    }

    @Test func deactivatedImage_downloadIsAdminOnly() async throws {
        try await APITestHarness().run { client in
            let id = try await client.imageOfProjectA(upload: true)
            #expect(try await client.call(.member, .post, "/v2/images/\(id)/actions/deactivate").status == .noContent)
            let denied = try await client.call(.member, .get, "/v2/images/\(id)/file")
            #expect(denied.status == .forbidden)
            #expect(denied.errorMessage?.contains("deactivated") == true)
            #expect(try await client.call(.admin, .get, "/v2/images/\(id)/file").text == "data")
            #expect(try await client.call(.noauthAdmin, .get, "/v2/images/\(id)/file").text == "data")
        }
    }

    @Test func storesDetail_isAdminOrService() async throws {
        let harness = try APITestHarness { configuration in
            configuration.enabledBackends = [StoreBackend(id: "fast", type: "file")]
            configuration.defaultBackend = "fast"
        }
        try await harness.run { client in
            let denied = try await client.call(.member, .get, "/v2/info/stores/detail")
            let list = try await client.call(.member, .get, "/v2/info/stores")
            let detail = try await client.call(.admin, .get, "/v2/info/stores/detail")
            #expect(denied.status == .forbidden)
            #expect(list.status == .ok)
            #expect(detail.status == .ok)
        }
    }
}

/// `[oslo_policy] policy_file` as the server loads it: overrides change what the API allows, and a
/// bad rule stops `buildApplication` with an error naming the file and the rule.
@Suite struct PolicyFileAPITests {
    @Test func override_changesTheAPI_otherRulesKeepGlanceDefaults() async throws {
        var harness = try APITestHarness()
        harness.configuration.policy = PolicyOptions(policyFile: harness.base.path + "/policy.yaml", policyFileIsExplicit: true)
        try #"{"add_image": "role:admin", "get_images": "rule:context_is_admin or role:auditor"}"#
            .write(toFile: harness.configuration.policy.policyFile!, atomically: true, encoding: .utf8)
        try await harness.run { client in
            let denied = try await client.call(.member, .post, "/v2/images", "{}")
            let allowed = try await client.call(.admin, .post, "/v2/images", "{}")
            let listByMember = try await client.call(.member, .get, "/v2/images")
            let image = try #require(allowed.jsonBody?["id"]?.stringValue)
            let showByMember = try await client.call(.member, .get, "/v2/images/\(image)")
            #expect(denied.status == .forbidden)
            #expect(allowed.status == .created)
            #expect(listByMember.status == .forbidden)
            #expect(showByMember.status == .ok)  // get_image untouched: the member reads its project's image
        }
    }

    @Test func badRule_stopsStartUp_namingTheRule() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let policy = directory.appending("policy.yaml")
        try "\"modify_image\": \"role:member and (project_id:%(project_id)s\"\n".write(toFile: policy, atomically: true, encoding: .utf8)
        var configuration = ServiceConfiguration.embeddedDefault(baseDirectory: directory.path)
        configuration.policy = PolicyOptions(policyFile: policy, policyFileIsExplicit: true)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        do {
            _ = try buildApplication(configuration: configuration, logger: logger)
            Issue.record("a bad policy rule did not stop the start-up")
        } catch {
            #expect("\(error)".contains("policy file \(policy): rule \"modify_image\""), "\(error)")
            #expect("\(error)".contains("not closed"), "\(error)")
        }
        // A missing explicit file too; an absent implicit policy.yaml is fine.
        configuration.policy = PolicyOptions(policyFile: directory.appending("missing.yaml"), policyFileIsExplicit: true)
        #expect(throws: (any Error).self) { try buildApplication(configuration: configuration, logger: logger) }
        configuration.policy = PolicyOptions(policyFile: directory.appending("missing.yaml"), policyFileIsExplicit: false)
        _ = try buildApplication(configuration: configuration, logger: logger)
    }
}
