import Foundation
import ImageStoreConfig
import ImageStoreNFS

/// What the mount guard checks, derived once from the store's options.
public struct MountGuardSettings: Sendable {
    public var datadir: String
    /// Absolute path of the marker file (`filesystem_store_marker_file`, default `<datadir>/.glance`).
    public var markerPath: String
    /// Whether `mountpoint` must be a mount point of one of `mountTypes`.
    public var requireMountpoint: Bool
    public var mountpoint: String
    public var mountTypes: [String]
    /// The NFS server to probe through libnfs, when `filesystem_is_nfs_configured`.
    public var nfsTarget: NFSServerTarget?
    /// The marker's path relative to the share root, for the probe on the server.
    public var nfsMarkerPath: String
    /// Why the store cannot be enabled whatever the checks say (e.g. NFS without a host).
    public var misconfiguration: String?
    public var interval: Duration
    public var timeout: Duration
    public var maxAge: Duration
    /// How long the metadata's answer to "which store id is recorded?" is reused for a marker without an
    /// id (Glance's empty one), "nothing recorded" included, before the database is asked again.
    public var identityMaxAge: Duration
    /// How old that answer may be and still stand in when the database does not answer (error or past
    /// `timeout`): one slow read must not disable a healthy share, but an answer is not trusted forever.
    public var identityStaleLimit: Duration

    public static let defaultIdentityMaxAge: Duration = .seconds(30)
    public static let defaultIdentityStaleLimit: Duration = .seconds(300)

    public init(
        datadir: String, markerPath: String, requireMountpoint: Bool = false, mountpoint: String? = nil,
        mountTypes: [String] = ["nfs", "nfs4"], nfsTarget: NFSServerTarget? = nil, misconfiguration: String? = nil,
        interval: Duration = .seconds(5), timeout: Duration = .seconds(2), maxAge: Duration = .seconds(1),
        identityMaxAge: Duration = Self.defaultIdentityMaxAge, identityStaleLimit: Duration = Self.defaultIdentityStaleLimit
    ) {
        self.datadir = Self.normalized(datadir)
        self.markerPath = markerPath
        self.requireMountpoint = requireMountpoint
        self.mountpoint = Self.normalized(mountpoint ?? datadir)
        self.mountTypes = mountTypes
        self.nfsTarget = nfsTarget
        self.misconfiguration = misconfiguration
        self.interval = interval
        self.timeout = timeout
        self.maxAge = maxAge
        self.identityMaxAge = identityMaxAge
        self.identityStaleLimit = max(identityStaleLimit, identityMaxAge)
        self.nfsMarkerPath = Self.relative(markerPath, to: self.mountpoint)
    }

    /// From the store's configuration. Bad NFS mount options throw (a bad value stops start-up);
    /// a missing host or share becomes `misconfiguration` (the store starts disabled, as Glance's spec says).
    public init(options: FilesystemStoreOptions) throws {
        var target: NFSServerTarget?
        var misconfiguration: String?
        if options.isNFSConfigured {
            let mountOptions = try NFSMountOptions(parsing: options.nfsMountOptions ?? "")
            switch (options.nfsHost, options.nfsSharePath) {
            case (let host?, let share?): target = NFSServerTarget(host: host, sharePath: share, options: mountOptions)
            case (nil, _): misconfiguration = "filesystem_nfs_host is required when filesystem_is_nfs_configured is true"
            case (_, nil): misconfiguration = "filesystem_nfs_share_path is required when filesystem_is_nfs_configured is true"
            }
        }
        self.init(
            datadir: options.datadir, markerPath: options.markerPath, requireMountpoint: options.requireMountpoint,
            mountpoint: options.effectiveMountpoint, mountTypes: options.mountTypes, nfsTarget: target,
            misconfiguration: misconfiguration, interval: options.guardInterval, timeout: options.guardTimeout,
            maxAge: options.guardMaxAge)
    }

    static func normalized(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    static func relative(_ path: String, to base: String) -> String {
        let prefix = base == "/" ? "/" : base + "/"
        return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : (path as NSString).lastPathComponent
    }
}
