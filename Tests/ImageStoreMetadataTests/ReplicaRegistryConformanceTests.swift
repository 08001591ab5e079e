import Foundation
import ImageStoreCore
import Testing

/// The `ReplicaRegistry` contract (replica rows, heartbeats, leases), run against every implementation.
@Suite struct ReplicaRegistryConformanceTests {
    @Test(arguments: RepositoryFactory.all)
    func register_heartbeat_expire_remove(factory: RepositoryFactory) async throws {
        try await factory.with { (repo: any ImageRepository) async throws in
            let registry = try #require(repo as? any ReplicaRegistry)
            #expect(try await registry.replicas().isEmpty)
            #expect(try await registry.heartbeatReplica("a") == false, "no row: declared dead")
            try await registry.registerReplica("a", host: "host-a")
            try await registry.registerReplica("b", host: "host-b")
            try await registry.registerReplica("a", host: "host-a")  // again: still one row
            #expect(try await registry.replicas().map(\.id).sorted() == ["a", "b"])
            #expect(try await registry.replicas().first { $0.id == "b" }?.host == "host-b")
            #expect(try await registry.expiredReplicas(lease: .seconds(60)).isEmpty)
            // Not expired: a remove with a long lease keeps the row.
            #expect(try await registry.removeReplica("a", ifExpired: .seconds(60)) == false)

            // a's heartbeat is at least 5 s old, b's fresh: a 3 s lease tells them apart even if this machine
            // stalls for up to 3 s between b's heartbeat and the query (the main test phase is CPU-heavy: a
            // 2 s / 1.5 s version of this failed there once with b also expired).
            try await Task.sleep(for: .seconds(5))
            #expect(try await registry.heartbeatReplica("b"))
            #expect(try await registry.expiredReplicas(lease: .seconds(3)).map(\.id) == ["a"])
            #expect(try await registry.removeReplica("a", ifExpired: .seconds(3)))
            #expect(try await registry.replicas().map(\.id) == ["b"])
            #expect(try await registry.heartbeatReplica("a") == false)
            #expect(try await registry.removeReplica("b", ifExpired: .zero))
            #expect(try await registry.replicas().isEmpty)
        }
    }

    @Test func sharedness_postgresShared_sqliteNot() async throws {
        try await RepositoryFactory.sqliteInMemory.with { repo in
            #expect((repo as? any ReplicaRegistry)?.isShared == false)
        }
        try await RepositoryFactory.postgres.with { repo in
            #expect((repo as? any ReplicaRegistry)?.isShared == true)
        }
    }
}
