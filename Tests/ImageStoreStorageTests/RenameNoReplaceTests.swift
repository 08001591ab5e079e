import Foundation
import ImageStoreCore
import Testing

@testable import ImageStoreStorage

/// Both ways of publishing without replacing: renameat2(RENAME_NOREPLACE), and link + unlink for
/// filesystems without it (NFS).
@Suite struct RenameNoReplaceTests {
    @Test(arguments: [true, false])
    func renameNoReplace_whenTargetIsFree_movesTheFile(preferRenameAt2: Bool) throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = "\(directory)/.a.tmp"
        let target = "\(directory)/a"
        #expect(FileManager.default.createFile(atPath: source, contents: Data([1, 2, 3])))

        try renameNoReplace(source, target, preferRenameAt2: preferRenameAt2)

        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["a"])
        #expect(FileManager.default.contents(atPath: target) == Data([1, 2, 3]))
    }

    @Test(arguments: [true, false])
    func renameNoReplace_whenTargetExists_throwsConflictAndChangesNothing(preferRenameAt2: Bool) throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = "\(directory)/.a.tmp"
        let target = "\(directory)/a"
        #expect(FileManager.default.createFile(atPath: source, contents: Data([1])))
        #expect(FileManager.default.createFile(atPath: target, contents: Data([2])))

        let error = #expect(throws: ImageStoreError.self) {
            try renameNoReplace(source, target, preferRenameAt2: preferRenameAt2)
        }
        #expect(error?.code == .conflict)
        #expect(FileManager.default.contents(atPath: target) == Data([2]))
        #expect(FileManager.default.contents(atPath: source) == Data([1]))
    }

    @Test func imageStoreError_mapsErrnoOnce() {
        #expect(imageStoreError(errno: ENOSPC, "write", context: .write).code == .storageFull)
        #expect(imageStoreError(errno: EDQUOT, "write", context: .write).code == .storageFull)
        #expect(imageStoreError(errno: EFBIG, "write", context: .write).code == .storageFull)
        #expect(imageStoreError(errno: EROFS, "open", context: .write).code == .writeDenied)
        #expect(imageStoreError(errno: EACCES, "open", context: .write).code == .writeDenied)
        #expect(imageStoreError(errno: ENOENT, "open", context: .read).code == .notFound)
        #expect(imageStoreError(errno: ENOENT, "open", context: .write).code == .storeUnavailable)
        #expect(imageStoreError(errno: ESTALE, "read", context: .read).code == .storeUnavailable)
        #expect(imageStoreError(errno: EEXIST, "link", context: .write).code == .conflict)
        let other = imageStoreError(errno: EBADF, "read", context: .read)
        #expect(other.code == .internal)
        #expect(other.message.contains("Bad file descriptor"))
    }
}
