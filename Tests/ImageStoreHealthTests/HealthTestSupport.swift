import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreHealth
import ImageStoreTestSupport
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// The real application (`buildApplication`, real SQLite, real store directory in a temp dir) behind
/// a real HTTP server, as the API tests run it.
struct HealthTestHarness {
    let base: TemporaryDirectory
    var configuration: ServiceConfiguration

    init(_ configure: (inout ServiceConfiguration, TemporaryDirectory) throws -> Void = { _, _ in }) throws {
        base = try TemporaryDirectory(prefix: "imagestore-health")
        configuration = ServiceConfiguration.embeddedDefault(baseDirectory: base.path)
        configuration.bindPort = 0
        try configure(&configuration, base)
    }

    func run<T>(
        dependencies: ApplicationDependencies? = nil, _ body: @Sendable (any TestClientProtocol) async throws -> T
    ) async throws -> T {
        defer { base.remove() }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try buildApplication(configuration: configuration, dependencies: dependencies, logger: logger)
        return try await app.test(.live, body)
    }

    /// Runs the app on `configuration.bindPort` itself (the live test framework forces port 0) and
    /// hands the test a client connected to that port.
    func runOnConfiguredPort(_ body: @Sendable (TestClient) async throws -> Void) async throws {
        defer { base.remove() }
        let app = try buildApplication(configuration: configuration, logger: quietLogger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: quietLogger))
        let port = configuration.bindPort
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let clock = ContinuousClock()
            let end = clock.now + .seconds(10)
            while !tcpPortAccepts(port) {
                guard clock.now < end else { throw TestSupportError("server not listening on \(port)") }
                try await Task.sleep(for: .milliseconds(10))
            }
            let client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(10)))
            client.connect()
            do {
                try await body(client)
            } catch {
                try? await client.shutdown()
                await group.triggerGracefulShutdown()
                throw error
            }
            try await client.shutdown()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

extension TestClientProtocol {
    func get(_ uri: String, accept: String? = nil, headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers = extra
        if let accept { headers[.accept] = accept }
        return try await execute(uri: uri, method: .get, headers: headers, body: nil)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }
}

/// A check that answers what the test scripts, one result per call (the last one repeats).
final class ScriptedCheck: HealthCheck {
    let name: String
    private let script: Mutex<[Bool]>
    private let calls = Mutex(0)

    init(name: String = "scripted", _ availability: [Bool]) {
        self.name = name
        script = Mutex(availability)
    }

    var callCount: Int { calls.withLock { $0 } }

    func set(_ availability: [Bool]) { script.withLock { $0 = availability } }

    func check() async -> HealthResult {
        calls.withLock { $0 += 1 }
        let available = script.withLock { script in script.count > 1 ? script.removeFirst() : script.first ?? true }
        return available ? .ok("fine") : HealthResult(available: false, reason: "BROKEN", details: "scripted failure")
    }
}

/// A check that never answers until released (a hung database, say), for timeout tests.
final class HangingCheck: HealthCheck {
    let name = "hanging"
    private let gate = AsyncStream<Void>.makeStream()
    private let started = AsyncStream<Void>.makeStream()
    private let calls = Mutex(0)

    var callCount: Int { calls.withLock { $0 } }

    func check() async -> HealthResult {
        calls.withLock { $0 += 1 }
        for await _ in gate.stream {}
        return .ok("released")
    }

    /// Lets every hung call return.
    func release() { gate.continuation.finish() }
}

/// A repository whose ping the test controls; nothing else is used by the health checks.
struct PingRepository: ImageRepository {
    let failure: (any Error)?
    func create(_ image: Image) async throws { throw ImageStoreError.badRequest("unused") }
    func get(_ id: ImageID) async throws -> Image? { nil }
    func list(_ query: ImageListQuery) async throws -> [Image] { [] }
    func update(
        _ id: ImageID, expecting expected: Set<ImageStatus>?, _ change: @escaping @Sendable (inout Image) throws -> Void
    )
        async throws -> Image
    { throw ImageStoreError.notFound("unused") }
    func delete(_ id: ImageID) async throws -> Bool { false }
    func storageUsed(owner: String?, excluding exclude: ImageID?) async throws -> Int64 { 0 }
    func images(withStatus statuses: Set<ImageStatus>) async throws -> [Image] { [] }
    func ping() async throws { if let failure { throw failure } }
    func addMember(_ member: ImageMember, limit: Int?) async throws { throw ImageStoreError.notFound("unused") }
    func member(_ memberID: String, of image: ImageID) async throws -> ImageMember? { nil }
    func members(of image: ImageID) async throws -> [ImageMember] { [] }
    func updateMember(_ memberID: String, of image: ImageID, status: MemberStatus) async throws -> ImageMember {
        throw ImageStoreError.notFound("unused")
    }
    func removeMember(_ memberID: String, of image: ImageID) async throws -> Bool { false }
    func storeIdentity(of store: String) async throws -> String? { nil }
    func claimStoreIdentity(_ markerID: String, of store: String) async throws -> String { markerID }
}

let quietLogger: Logger = {
    var logger = Logger(label: "health-test")
    logger.logLevel = .critical
    return logger
}()
