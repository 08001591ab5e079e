import ImageStoreCore

/// The filesystem store's options: glance_store's filesystem driver options plus ImageStore's mount
/// guard (all read from the store's own section, `[<backend id>]`, or `[glance_store]` in legacy mode).
public struct FilesystemStoreOptions: Sendable, Equatable {
    /// `filesystem_store_datadir`: where image files live.
    public var datadir: String
    /// `filesystem_store_file_perm`: mode given to image files (octal text); 0 leaves the umask's mode.
    public var filePerm: Int
    /// `filesystem_store_chunk_size`: read and write chunk size in bytes.
    public var chunkSize: Int
    /// `store_description`: shown to users by the stores API.
    public var description: String?
    /// `weight`: store preference when listing locations.
    public var weight: Int
    /// `filesystem_store_reserved_space`: free space uploads must leave (bytes, or `N%` of the filesystem);
    /// an upload that would eat into it is refused with 413 before a byte is written.
    public var reservedSpace: ReservedSpace = .none

    // MARK: Mount guard

    /// `filesystem_store_marker_file`: a file that must exist on the share; relative names are
    /// inside `datadir`, absolute paths are used as they are.
    public var markerFile: String
    /// `filesystem_store_require_mountpoint`: refuse writes unless the mount point is mounted.
    /// Always true when `isNFSConfigured` (writing into the empty directory under a missing mount
    /// would put images where the share cannot see them).
    public var requireMountpoint: Bool
    /// `filesystem_store_mountpoint`: the ancestor of `datadir` (or `datadir` itself) that must be
    /// a mount point; nil means `datadir`.
    public var mountpointPath: String?
    /// `filesystem_store_mount_types`: filesystem types the mount point may have.
    public var mountTypes: [String]
    /// `filesystem_is_nfs_configured`: the store is an NFS share the server probes.
    public var isNFSConfigured: Bool
    /// `filesystem_nfs_host`: the NFS server (required when `isNFSConfigured`).
    public var nfsHost: String?
    /// `filesystem_nfs_share_path`: the export path on the server (required when `isNFSConfigured`).
    public var nfsSharePath: String?
    /// `filesystem_nfs_mount_options`: raw mount options text, interpreted by the NFS module.
    public var nfsMountOptions: String?
    /// `mount_guard_interval` (seconds): the time between background checks of the mount.
    public var guardInterval: Duration
    /// `mount_guard_timeout` (milliseconds; or glance_store's `filesystem_store_timeout`, whole seconds,
    /// the smaller winning): how long one check may take before the store counts as gone.
    public var guardTimeout: Duration
    /// `mount_guard_max_age` (milliseconds): how old a cached check result may be and still answer a request.
    public var guardMaxAge: Duration
    /// `filesystem_store_thread_pool_size` (glance_store's name): threads for the store's reads and
    /// metadata calls, and so the most a hung share can ever hold. Each upload has its own file thread.
    public var threadPoolSize: Int = Self.defaultThreadPoolSize
    /// `filesystem_store_direct_io`: uploads are written with O_DIRECT (no copy into the page cache);
    /// a filesystem that refuses it gets buffered writes.
    public var directIO: Bool = Self.defaultDirectIO
    /// `filesystem_store_flush_after`: write-behind for buffered uploads, in MiB; 0 turns it off. Every
    /// time this much more of an upload is written, its writeback is started and the window before it
    /// is waited for, so the fsync before publishing (under `mount_guard_timeout`) has little left.
    public var flushAfterMiB: Int = Self.defaultFlushAfterMiB

    public static let defaultDatadir = "/var/lib/glance/images"
    public static let defaultFilePerm = 0
    public static let defaultChunkSize = 65536
    public static let defaultWeight = 0
    public static let defaultMarkerFile = ".glance"
    public static let defaultRequireMountpoint = false
    public static let defaultMountTypes = ["nfs", "nfs4"]
    public static let defaultIsNFSConfigured = false
    public static let defaultGuardInterval: Duration = .seconds(5)
    public static let defaultGuardTimeout: Duration = .milliseconds(2000)
    public static let defaultGuardMaxAge: Duration = .milliseconds(1000)
    /// Smaller than glance_store's 10: reads stream through a thread for a moment per chunk, and fewer
    /// threads is less a hung share can hold.
    public static let defaultThreadPoolSize = 4
    /// Off: with O_DIRECT a just-uploaded image is not in the page cache, and the first download after
    /// the upload read the disk (0.66 vs 2.6 GB/s) for no CPU saving on a quiet machine (docs/performance.md).
    public static let defaultDirectIO = false
    /// 16 MiB: the final fsync of a 1 GiB upload fell from seconds to milliseconds with no loss of upload
    /// speed or of the page-cache download after it (docs/performance.md).
    public static let defaultFlushAfterMiB = 16
    /// The largest window accepted (a larger one would leave as much dirty as no write-behind).
    public static let maximumFlushAfterMiB = 1024

    public init(
        datadir: String = Self.defaultDatadir, filePerm: Int = Self.defaultFilePerm, chunkSize: Int = Self.defaultChunkSize,
        description: String? = nil, weight: Int = Self.defaultWeight, markerFile: String = Self.defaultMarkerFile,
        requireMountpoint: Bool = Self.defaultRequireMountpoint, mountpointPath: String? = nil,
        mountTypes: [String] = Self.defaultMountTypes, isNFSConfigured: Bool = Self.defaultIsNFSConfigured,
        nfsHost: String? = nil, nfsSharePath: String? = nil, nfsMountOptions: String? = nil,
        guardInterval: Duration = Self.defaultGuardInterval, guardTimeout: Duration = Self.defaultGuardTimeout,
        guardMaxAge: Duration = Self.defaultGuardMaxAge
    ) {
        self.datadir = datadir
        self.filePerm = filePerm
        self.chunkSize = chunkSize
        self.description = description
        self.weight = weight
        self.markerFile = markerFile
        self.requireMountpoint = requireMountpoint || isNFSConfigured
        self.mountpointPath = mountpointPath
        self.mountTypes = mountTypes
        self.isNFSConfigured = isNFSConfigured
        self.nfsHost = nfsHost
        self.nfsSharePath = nfsSharePath
        self.nfsMountOptions = nfsMountOptions
        self.guardInterval = guardInterval
        self.guardTimeout = guardTimeout
        self.guardMaxAge = guardMaxAge
    }

    /// The marker file's full path (`markerFile` inside `datadir` unless it is absolute).
    public var markerPath: String {
        if markerFile.hasPrefix("/") { return markerFile }
        return datadir.hasSuffix("/") ? datadir + markerFile : datadir + "/" + markerFile
    }

    /// The directory that must be a mount point: `mountpointPath`, or else `datadir`.
    public var effectiveMountpoint: String { mountpointPath ?? datadir }

    /// Option names, as they appear in the file.
    enum Key {
        static let datadir = "filesystem_store_datadir"
        static let filePerm = "filesystem_store_file_perm"
        static let chunkSize = "filesystem_store_chunk_size"
        static let description = "store_description"
        static let weight = "weight"
        static let markerFile = "filesystem_store_marker_file"
        static let requireMountpoint = "filesystem_store_require_mountpoint"
        static let mountpoint = "filesystem_store_mountpoint"
        static let mountTypes = "filesystem_store_mount_types"
        static let isNFSConfigured = "filesystem_is_nfs_configured"
        static let nfsHost = "filesystem_nfs_host"
        static let nfsSharePath = "filesystem_nfs_share_path"
        static let nfsMountOptions = "filesystem_nfs_mount_options"
        static let guardInterval = "mount_guard_interval"
        static let guardTimeout = "mount_guard_timeout"
        static let guardMaxAge = "mount_guard_max_age"
        static let reservedSpace = "filesystem_store_reserved_space"
        /// glance_store 5.4.0's deadline for hung filesystem calls, in whole seconds (0: off); the same
        /// meaning as `mount_guard_timeout`.
        static let storeTimeout = "filesystem_store_timeout"
        static let threadPoolSize = "filesystem_store_thread_pool_size"
        static let directIO = "filesystem_store_direct_io"
        static let flushAfter = "filesystem_store_flush_after"

        static let all: Set<String> = [
            datadir, filePerm, chunkSize, description, weight, markerFile, requireMountpoint, mountpoint, mountTypes,
            isNFSConfigured, nfsHost, nfsSharePath, nfsMountOptions, guardInterval, guardTimeout, guardMaxAge,
            reservedSpace, storeTimeout, threadPoolSize, directIO, flushAfter,
        ]
    }
}
