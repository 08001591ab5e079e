import Foundation
import ImageStoreCore
import Testing

/// The store-identity part of the `ImageRepository` contract (which share a backend was first seen on),
/// run against every implementation.
@Suite struct StoreIdentityConformanceTests {
    @Test(arguments: RepositoryFactory.all)
    func claim_firstRecords_laterClaimsReturnTheFirst(factory: RepositoryFactory) async throws {
        try await factory.with { (repo: any ImageRepository) async throws in
            #expect(try await repo.storeIdentity(of: "file") == nil)
            #expect(try await repo.claimStoreIdentity("id-a", of: "file") == "id-a")
            #expect(try await repo.claimStoreIdentity("id-b", of: "file") == "id-a")
            #expect(try await repo.storeIdentity(of: "file") == "id-a")
            // Each backend has its own.
            #expect(try await repo.storeIdentity(of: "other") == nil)
            #expect(try await repo.claimStoreIdentity("id-b", of: "other") == "id-b")
            #expect(try await repo.storeIdentity(of: "file") == "id-a")
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func concurrentFirstClaims_recordExactlyOne(factory: RepositoryFactory) async throws {
        try await factory.with { (repo: any ImageRepository) async throws in
            let answers = await withTaskGroup(of: String?.self) { group in
                for i in 0..<16 { group.addTask { try? await repo.claimStoreIdentity("id-\(i)", of: "file") } }
                return await group.reduce(into: [String?]()) { $0.append($1) }
            }
            let recorded = try #require(try await repo.storeIdentity(of: "file"))
            #expect(answers.allSatisfy { $0 == recorded }, "\(answers)")
        }
    }
}
