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

/// The health tests run the shared application harness.
typealias HealthTestHarness = AppTestHarness

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
