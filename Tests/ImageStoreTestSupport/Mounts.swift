import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Mount helpers for tests running as root (bind mounts and tmpfs work here; kernel NFS mounts do not).
/// Each throws with the errno text; `unmount` never throws so it fits a `defer`.
public enum Mounts {
    /// Bind-mounts `source` onto the existing directory `target`.
    public static func bindMount(source: String, target: String) throws {
        guard mount(source, target, nil, UInt(MS_BIND), nil) == 0 else {
            throw TestSupportError("bind mount \(source) → \(target): \(String(cString: strerror(errno)))")
        }
    }

    /// Mounts a tmpfs of `sizeBytes` on the existing directory `at` (a small one makes ENOSPC easy to provoke;
    /// a read-only one, EROFS).
    public static func tmpfs(at target: String, sizeBytes: Int64, readOnly: Bool = false) throws {
        guard mount("tmpfs", target, "tmpfs", readOnly ? UInt(MS_RDONLY) : 0, "size=\(sizeBytes),mode=0755") == 0 else {
            throw TestSupportError("tmpfs on \(target): \(String(cString: strerror(errno)))")
        }
    }

    /// Mounts a ramfs on the existing directory `at`: a writable filesystem that refuses O_DIRECT (tmpfs
    /// accepts it since Linux 6.6).
    public static func ramfs(at target: String) throws {
        guard mount("ramfs", target, "ramfs", 0, "mode=0755") == 0 else {
            throw TestSupportError("ramfs on \(target): \(String(cString: strerror(errno)))")
        }
    }

    /// Unmounts `target`; if it is busy, detaches it lazily (`umount -l`) so the test can still clean up.
    /// Returns false if neither worked (not mounted, for instance).
    @discardableResult
    public static func unmount(_ target: String) -> Bool {
        if umount2(target, 0) == 0 { return true }
        return umount2(target, Int32(MNT_DETACH)) == 0
    }

    /// Whether `path` is a mount point right now (listed in /proc/self/mountinfo).
    public static func isMountPoint(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        // Field 5 is the mount point, with spaces escaped as \040.
        return text.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].replacingOccurrences(of: "\\040", with: " ") == resolved
        }
    }
}
