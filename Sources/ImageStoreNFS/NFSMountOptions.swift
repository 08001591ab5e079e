/// NFS mount options written in mount(8)/nfs(5) syntax ("vers=4,port=2049,timeo=20,retrans=2"), reduced to
/// what libnfs can honour. Options a kernel mount knows but libnfs has no use for are accepted silently; options
/// nobody knows become `warnings` (a typo in a config file should be visible, not fatal); a bad value of an option
/// we use throws, naming the option.
public struct NFSMountOptions: Sendable, Equatable {
    /// 3 or 4. `vers=4.0`/`4.1`/`4.2` all map to 4: libnfs speaks 4.0 only, and a probe needs nothing newer.
    public var version: Int
    /// `port=`: the NFS server port. nil = the protocol default (2049; v3 asks rpcbind).
    public var port: Int?
    /// `mountport=`: the MOUNT service port (NFSv3 only). nil = ask rpcbind.
    public var mountPort: Int?
    /// `timeo=`: the RPC timeout in deciseconds, as mount(8) writes it.
    public var timeo: Int?
    /// `retrans=`: kept for completeness. libnfs 4.0 has no retransmission knob; a probe's deadline rules instead.
    public var retrans: Int?
    /// One line per option that was not understood (and therefore ignored).
    public var warnings: [String]

    public init(version: Int = 4, port: Int? = nil, mountPort: Int? = nil, timeo: Int? = nil, retrans: Int? = nil) {
        self.version = version
        self.port = port
        self.mountPort = mountPort
        self.timeo = timeo
        self.retrans = retrans
        self.warnings = []
    }

    /// `timeo` as a duration (timeo is in tenths of a second).
    public var timeout: Duration? { timeo.map { .milliseconds($0 * 100) } }

    /// A bad value for an option we use.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let option: String
        public let value: String
        public let reason: String
        public var description: String { "invalid NFS mount option '\(option)=\(value)': \(reason)" }
    }

    /// Options a kernel NFS mount accepts but that change nothing for a libnfs client (caching, locking, retry
    /// policy, security flavour, generic mount flags). Accepted without a warning so a real fstab line can be pasted.
    static let ignoredOptions: Set<String> = [
        "hard", "soft", "softreval", "nosoftreval", "intr", "nointr", "proto", "tcp", "udp", "rdma",
        "rsize", "wsize", "ac", "noac", "acregmin", "acregmax", "acdirmin", "acdirmax", "actimeo",
        "bg", "fg", "retry", "sec", "sharecache", "nosharecache", "resvport", "noresvport",
        "lookupcache", "fsc", "nofsc", "lock", "nolock", "local_lock", "cto", "nocto", "acl", "noacl",
        "rdirplus", "nordirplus", "mountproto", "mounthost", "mountvers", "namlen", "clientaddr",
        "nconnect", "max_connect", "minorversion", "migration", "nomigration", "fsid", "sloppy",
        "defaults", "auto", "noauto", "user", "nouser", "users", "rw", "ro", "suid", "nosuid",
        "dev", "nodev", "exec", "noexec", "atime", "noatime", "diratime", "nodiratime", "relatime",
        "norelatime", "strictatime", "sync", "async", "_netdev", "nofail", "x-systemd.automount",
    ]

    /// Parses a comma-separated option list. Later options override earlier ones, as in mount(8).
    public init(parsing text: String) throws(ParseError) {
        self.init()
        for rawItem in text.split(separator: ",", omittingEmptySubsequences: true) {
            let item = rawItem.trimmingWhitespace()
            if item.isEmpty { continue }
            let key: String
            let value: String?
            if let eq = item.firstIndex(of: "=") {
                key = String(item[..<eq]).trimmingWhitespace().lowercased()
                value = String(item[item.index(after: eq)...]).trimmingWhitespace()
            } else {
                key = item.lowercased()
                value = nil
            }
            switch key {
            case "vers", "nfsvers":
                version = try Self.parseVersion(option: key, value)
            case "port":
                // mount(8): port=0 means "ask rpcbind", i.e. the default.
                let p = try Self.parseInt(option: key, value, range: 0...65535)
                port = p == 0 ? nil : p
            case "mountport":
                let p = try Self.parseInt(option: key, value, range: 0...65535)
                mountPort = p == 0 ? nil : p
            case "timeo":
                // Upper bound: nfs(5) caps timeo at 600 s; beyond that it is surely a unit mistake.
                timeo = try Self.parseInt(option: key, value, range: 1...6000)
            case "retrans":
                retrans = try Self.parseInt(option: key, value, range: 0...1000)
            case _ where Self.ignoredOptions.contains(key):
                continue
            default:
                warnings.append("unknown NFS mount option '\(item)' ignored")
            }
        }
    }

    private static func parseInt(option: String, _ value: String?, range: ClosedRange<Int>) throws(ParseError) -> Int {
        guard let value, !value.isEmpty else {
            throw ParseError(option: option, value: value ?? "", reason: "a number is required")
        }
        guard let n = Int(value), range.contains(n) else {
            throw ParseError(
                option: option, value: value,
                reason: "expected a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    private static func parseVersion(option: String, _ value: String?) throws(ParseError) -> Int {
        switch value {
        case "3", "3.0": return 3
        case "4", "4.0", "4.1", "4.2": return 4
        default:
            throw ParseError(
                option: option, value: value ?? "", reason: "supported versions are 3 and 4 (4.0, 4.1, 4.2)")
        }
    }

    /// The libnfs URL for `host` and `sharePath`, carrying the version and the ports (libnfs 4.0 has no setter
    /// for the NFS port: the URL is the only way to pass it).
    public func url(host: String, sharePath: String) -> String {
        // A bare IPv6 address needs brackets to be told apart from the port-less authority libnfs expects.
        let authority = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        let path = sharePath.hasPrefix("/") ? sharePath : "/" + sharePath
        var query = ["version=\(version)"]
        if let port { query.append("nfsport=\(port)") }
        if version == 3, let mountPort { query.append("mountport=\(mountPort)") }
        return "nfs://\(authority)\(path)?\(query.joined(separator: "&"))"
    }
}

/// Where a share lives: `host:sharePath` plus how to reach it.
public struct NFSServerTarget: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    /// The exported path as the client names it (for ganesha's NFSv4: the `Pseudo` path).
    public var sharePath: String
    public var options: NFSMountOptions

    public init(host: String, sharePath: String, options: NFSMountOptions = NFSMountOptions()) {
        self.host = host
        self.sharePath = sharePath
        self.options = options
    }

    public var url: String { options.url(host: host, sharePath: sharePath) }
    public var description: String {
        "\(host):\(sharePath) (NFSv\(options.version)\(options.port.map { ", port \($0)" } ?? ""))"
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
