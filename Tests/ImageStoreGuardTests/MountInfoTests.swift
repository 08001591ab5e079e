import Foundation
import ImageStoreTestSupport
import Testing

@testable import ImageStoreGuard

@Suite struct MountInfoTests {
    @Test func parse_readsMountPointTypeAndSource() {
        let text = """
            36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
            22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw

            """
        #expect(
            MountInfo.parse(text) == [
                .init(mountPoint: "/mnt2", fsType: "ext3", source: "/dev/root"),
                .init(mountPoint: "/proc", fsType: "proc", source: "proc"),
            ])
    }

    @Test func parse_withoutOptionalFields_findsTheSeparator() {
        // Zero optional fields before "-": the type still follows the separator.
        let entries = MountInfo.parse("100 1 0:50 / /srv/images rw,relatime - nfs4 10.0.0.5:/exports/glance rw,vers=4.2\n")
        #expect(entries == [.init(mountPoint: "/srv/images", fsType: "nfs4", source: "10.0.0.5:/exports/glance")])
    }

    @Test func parse_unescapesOctalSpacesTabsAndBackslashes() {
        let text = #"40 1 0:60 / /mnt/my\040images\011x\134y rw shared:3 - nfs server:/a\040b rw"#
        let entries = MountInfo.parse(text)
        #expect(entries == [.init(mountPoint: "/mnt/my images\tx\\y", fsType: "nfs", source: "server:/a b")])
    }

    @Test func parse_skipsMalformedLines() {
        #expect(MountInfo.parse("garbage\n1 2 3\n\n").isEmpty)
    }

    @Test func unescape_leavesAnIncompleteEscapeAlone() {
        #expect(MountInfo.unescape(#"/a\04"#) == #"/a\04"#)
        #expect(MountInfo.unescape(#"/a\999b"#) == #"/a\999b"#)
    }

    /// The real file, with a real bind mount whose path needs escaping.
    @Test func parse_realMountinfo_findsABindMountWithASpace() throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-mountinfo")
        defer { temp.remove() }
        let source = try temp.makeDirectory("source")
        let target = try temp.makeDirectory("with space")
        try Mounts.bindMount(source: source, target: target)
        defer { Mounts.unmount(target) }
        let text = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        #expect(text.contains(#"with\040space"#))
        let entry = MountInfo.parse(text).last { $0.mountPoint == target }
        #expect(entry != nil)
        #expect(entry?.fsType.isEmpty == false)
    }
}
