import AsyncHTTPClient
import Foundation
import ImageStoreConfig
import ImageStoreCore
import ImageStorePolicy
import ImageStoreTestSupport
import Logging
import Testing

@testable import ImageStoreKeystone

/// One real Keystone for the whole suite (starting one costs tens of seconds), stopped after it.
struct SharedKeystone: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let keystone = try await KeystoneServer.start()
        defer { keystone.stopNow() }
        try await KeystoneFixture.$current.withValue(try await KeystoneFixture(keystone)) {
            try await function()
        }
    }
}

/// The suite's Keystone with the image service registered and a few users.
struct KeystoneFixture: Sendable {
    @TaskLocal static var current: KeystoneFixture?

    let keystone: KeystoneServer
    let glance: KeystoneServer.User
    let alice: KeystoneServer.User
    let bob: KeystoneServer.User

    init(_ keystone: KeystoneServer) async throws {
        self.keystone = keystone
        glance = try await keystone.registerImageService(imageURL: "http://127.0.0.1:9")
        alice = try await keystone.user(project: "alpha", roles: ["member", "reader"])
        bob = try await keystone.user(project: "beta", roles: ["reader"])
    }

    static func get() throws -> KeystoneFixture { try #require(current, "the suite's Keystone did not start") }

    func options(timeout: Duration = .seconds(15), retries: Int = 1, authURL: String? = nil) -> KeystoneAuthOptions {
        KeystoneAuthOptions(
            authURL: authURL ?? keystone.url, username: glance.user_name, password: glance.password, projectName: "service",
            userDomainName: "Default", projectDomainName: "Default", regionName: "RegionOne", interface: "public",
            httpConnectTimeout: timeout, httpRequestMaxRetries: retries)
    }
}

let testLogger: Logger = {
    var logger = Logger(label: "keystone-tests")
    logger.logLevel = .critical
    return logger
}()

/// Runs `body` with a Keystone validator and its HTTP client, shut down afterwards.
func withKeystoneValidator<T>(
    _ options: KeystoneAuthOptions, _ body: (KeystoneTokenValidator) async throws -> T
) async throws -> T {
    let client = try KeystoneTokenValidator.makeHTTPClient(options)
    do {
        let result = try await body(KeystoneTokenValidator(options: options, httpClient: client, logger: testLogger))
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

@Suite(.serialized, KeystoneServer.requiredTrait, SharedKeystone())
struct KeystoneTests {
    // MARK: The TokenValidator contract, on each implementation

    enum Implementation: String, CaseIterable, CustomTestStringConvertible {
        case keystone, cachedKeystone, fake
        var testDescription: String { rawValue }
    }

    /// The validator under test, and a token for alice, one for bob (the fake is told about them).
    func withValidator(
        _ implementation: Implementation, _ body: (any TokenValidator, KeystoneFixture, [String: String]) async throws -> Void
    )
        async throws
    {
        let fixture = try KeystoneFixture.get()
        let tokens = ["alice": try await fixture.keystone.token(for: fixture.alice), "bob": try await fixture.keystone.token(for: fixture.bob)]
        switch implementation {
        case .keystone:
            try await withKeystoneValidator(fixture.options()) { try await body($0, fixture, tokens) }
        case .cachedKeystone:
            try await withKeystoneValidator(fixture.options()) {
                try await body(CachingTokenValidator($0, ttl: 300, capacity: 100), fixture, tokens)
            }
        case .fake:
            let fake = StaticTokenValidator()
            for (name, user) in [("alice", fixture.alice), ("bob", fixture.bob)] {
                fake.add(
                    tokens[name]!,
                    ValidatedToken(
                        identity: RequestIdentity(
                            userID: user.user_id, userName: user.user_name, userDomainID: "default", projectID: user.project_id,
                            projectName: user.project_name, projectDomainID: "default",
                            roles: name == "alice" ? ["member", "reader"] : ["reader"]),
                        expiresAt: Date().addingTimeInterval(3600)))
            }
            try await body(fake, fixture, tokens)
        }
    }

    @Test(arguments: Implementation.allCases)
    func validToken_givesUserProjectAndRoles(_ implementation: Implementation) async throws {
        try await withValidator(implementation) { validator, fixture, tokens in
            let token = tokens["alice"]!
            let validated = try await validator.validate(token, allowExpired: false)
            #expect(validated.identity.userID == fixture.alice.user_id)
            #expect(validated.identity.projectID == fixture.alice.project_id)
            #expect(validated.identity.projectName == "alpha")
            #expect(validated.identity.projectDomainID == "default")
            #expect(Set(validated.identity.roles).isSuperset(of: ["member", "reader"]))
            #expect(!validated.identity.isAdmin)
            #expect(validated.expiresAt > Date().addingTimeInterval(600))
            // Twice: the same answer (from the cache, where there is one).
            #expect(try await validator.validate(token, allowExpired: false) == validated)
        }
    }

    @Test(arguments: Implementation.allCases)
    func unknownToken_isUnauthorized(_ implementation: Implementation) async throws {
        try await withValidator(implementation) { validator, _, _ in
            await expectError(.unauthorized) { try await validator.validate("gAAAAABnot-a-token", allowExpired: false) }
            await expectError(.unauthorized) { try await validator.validate("", allowExpired: false) }
        }
    }

    // MARK: Keystone specifics

    @Test func serviceToken_isKeptBetweenValidations_andReplacedWhenRevoked() async throws {
        let fixture = try KeystoneFixture.get()
        try await withKeystoneValidator(fixture.options()) { validator in
            let first = try await validator.currentSession()
            let token = try await fixture.keystone.token(for: fixture.bob)
            _ = try await validator.validate(token, allowExpired: false)
            #expect(try await validator.currentSession().token == first.token)
            #expect(first.refreshAt > Date().addingTimeInterval(3000))  // 1 h tokens, renewed 2 min early
            #expect(first.validateURL == fixture.keystone.url + "/v3/auth/tokens")
            // Keystone revokes the service's own token: the next validation logs in again and succeeds.
            try await revoke(first.token, fixture)
            #expect(try await validator.validate(token, allowExpired: false).identity.userID == fixture.bob.user_id)
            #expect(try await validator.currentSession().token != first.token)
        }
    }

    @Test func revokedUserToken_isUnauthorized_uncached() async throws {
        let fixture = try KeystoneFixture.get()
        try await withKeystoneValidator(fixture.options()) { validator in
            let token = try await fixture.keystone.token(for: fixture.alice)
            _ = try await validator.validate(token, allowExpired: false)
            try await revoke(token, fixture)
            await expectError(.unauthorized) { try await validator.validate(token, allowExpired: false) }
        }
    }

    @Test func wrongServicePassword_isUnavailable_notUnauthorized() async throws {
        let fixture = try KeystoneFixture.get()
        var options = fixture.options()
        options.password = "wrong"
        try await withKeystoneValidator(options) { validator in
            let token = try await fixture.keystone.token(for: fixture.alice)
            await expectError(.dependencyUnavailable) { try await validator.validate(token, allowExpired: false) }
        }
    }

    @Test func keystoneNotListening_is503Fast() async throws {
        let fixture = try KeystoneFixture.get()
        let closedPort = try freeTCPPort()
        let options = fixture.options(timeout: .seconds(5), retries: 3, authURL: "http://127.0.0.1:\(closedPort)")
        try await withKeystoneValidator(options) { validator in
            let start = ContinuousClock.now
            await expectError(.dependencyUnavailable) { try await validator.validate("some-token", allowExpired: false) }
            // Refused connections fail at once; the retries' backoff adds well under a second (the deadline is 5 s).
            #expect(ContinuousClock.now - start < .seconds(3))
        }
    }

    @Test func keystoneHung_cachedTokensStillServed_newOnes503WithinTheDeadline() async throws {
        let fixture = try KeystoneFixture.get()
        // 6 s: a Keystone on a loaded 2-core machine can take seconds for one validation.
        try await withKeystoneValidator(fixture.options(timeout: .seconds(6))) { keystone in
            let validator = CachingTokenValidator(keystone, ttl: 300, capacity: 100)
            _ = try await keystone.currentSession()  // the service's login, outside the deadline measured below
            let known = try await fixture.keystone.token(for: fixture.alice)
            let unknown = try await fixture.keystone.token(for: fixture.bob)
            _ = try await validator.validate(known, allowExpired: false)
            try await fixture.keystone.suspend()
            defer { fixture.keystone.resume() }
            let start = ContinuousClock.now
            #expect(try await validator.validate(known, allowExpired: false).identity.userID == fixture.alice.user_id)
            #expect(ContinuousClock.now - start < .seconds(1))
            await expectError(.dependencyUnavailable) { try await validator.validate(unknown, allowExpired: false) }
            let waited = ContinuousClock.now - start
            // The deadline is 6 s; a loaded machine may add some, a hang would add much more.
            #expect(waited >= .seconds(6) && waited < .seconds(20), "answered after \(waited)")
        }
    }

    /// `DELETE /v3/auth/tokens` as the admin (curl, as a deployer would).
    func revoke(_ token: String, _ fixture: KeystoneFixture) async throws {
        let admin = try await fixture.keystone.token(
            for: .init(user_id: "", user_name: "admin", password: fixture.keystone.adminPassword, project_id: "", project_name: "admin"))
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let process = try ManagedProcess(
            "curl",
            arguments: [
                "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", "X-Auth-Token: \(admin)", "-H",
                "X-Subject-Token: \(token)", fixture.keystone.url + "/v3/auth/tokens",
            ], stdoutPath: directory.appending("out"))
        _ = await process.waitForExit(timeout: .seconds(30))
        #expect((try? String(contentsOfFile: directory.appending("out"), encoding: .utf8)) == "204")
    }
}
