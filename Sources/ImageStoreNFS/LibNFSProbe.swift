import CLibNFS
import Foundation
import ImageStoreCore
import Logging
import Synchronization

/// Probes an NFS share through libnfs: `nfs_statvfs64` of the share root plus `nfs_stat64` of the marker file.
///
/// One libnfs context, mounted once and reused (a mount per probe costs milliseconds; a reused context answers in a
/// fraction of one), lives on a dedicated worker thread owned by this probe. Each probe races the worker's answer
/// against its deadline, so a hung server costs the caller exactly the deadline while the stuck call stays on the
/// worker. While such a call is still stuck, further probes answer `.timedOut` at once instead of queueing behind it.
/// Any failure other than a missing marker throws the context away (libnfs NFSv4 contexts never recover after a
/// server restart) and the next probe builds a fresh one with a new NFSv4 client name.
public final class LibNFSProbe: NFSProbe {
    public let target: NFSServerTarget
    private let logger: Logger
    /// The deadline primitive every blocking call goes through: one thread, the race against the deadline,
    /// and "still stuck: answer at once" (`BlockingCallExecutor.run(deadline:)`).
    private let executor: BlockingCallExecutor
    /// Touched only on the executor's thread.
    private let connection: any BlockingProbeOperation

    public convenience init(target: NFSServerTarget, logger: Logger = Logger(label: "imagestore.nfs")) {
        self.init(target: target, operation: LibNFSConnection(target: target, logger: logger), logger: logger)
    }

    /// With another blocking operation in place of libnfs: lets tests drive the deadline race deterministically.
    init(
        target: NFSServerTarget, operation: any BlockingProbeOperation, logger: Logger = Logger(label: "imagestore.nfs")
    ) {
        self.target = target
        self.logger = logger
        self.executor = BlockingCallExecutor(name: "nfs-probe \(target.host):\(target.sharePath)")
        self.connection = operation
    }

    deinit {
        // The context is destroyed on its own thread, after any call still stuck there has returned; the
        // executor's thread ends once that is done.
        let connection = self.connection
        executor.submit { connection.destroy(reason: "probe released") }
    }

    /// Returns once the worker has finished everything queued before this call (including a stuck call).
    func waitForWorker() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if !executor.submit({ continuation.resume() }) { continuation.resume() }
        }
    }

    public func probe(markerFile: String, deadline: Duration) async -> NFSProbeResult {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = max(deadline, .milliseconds(1))
        let connection = self.connection
        let outcome = await executor.run(deadline: deadline) { () -> NFSProbeResult? in
            // Past the deadline already (the executor answers the caller): a call with no time left would only
            // fail and cost a healthy context.
            let remaining = (start + deadline) - clock.now
            guard remaining > .zero else { return nil }
            return connection.probe(markerFile: markerFile, timeout: remaining)
        }
        switch outcome {
        case .completed(let answer?):
            return answer.timed(elapsed: clock.now - start)
        case .timedOut(let blocked) where clock.now - start < deadline && blocked > .zero:
            // Refused at once: an earlier call is still stuck on the thread.
            return NFSProbeResult(
                reachable: false, failure: .timedOut(blocked), elapsed: clock.now - start,
                summary: "NFS timed out: previous call still blocked after \(blocked.formattedMilliseconds)")
        case .completed(nil), .timedOut:
            logger.debug("NFS probe timed out", metadata: ["target": "\(target)", "deadline": "\(deadline)"])
            return NFSProbeResult(
                reachable: false, failure: .timedOut(deadline), elapsed: clock.now - start,
                summary: "NFS timed out: no answer from \(target) within \(deadline.formattedMilliseconds)")
        }
    }
}

/// The blocking work of one probe, run on the worker thread only.
protocol BlockingProbeOperation: Sendable {
    /// One probe within `timeout`; `elapsed` and `summary` are filled in by the caller.
    func probe(markerFile: String, timeout: Duration) -> NFSProbeResult
    /// Releases any connection (the probe is going away).
    func destroy(reason: String)
}

/// The libnfs context and everything done with it. Confined to the probe's worker thread (hence unchecked).
final class LibNFSConnection: BlockingProbeOperation, @unchecked Sendable {
    private let target: NFSServerTarget
    private let logger: Logger
    private var context: OpaquePointer?
    private var generation = 0
    /// Distinguishes this process's probes in NFSv4 client names (libnfs's default name collides within a second).
    private static let processNonce = UInt32.random(in: .min ... .max)
    private static let contextCounter = Atomic<Int>(0)

    init(target: NFSServerTarget, logger: Logger) {
        self.target = target
        self.logger = logger
    }

    /// Milliseconds for `nfs_set_timeout`: the time left to the deadline, shortened by `timeo` when that is shorter.
    private func timeoutMilliseconds(_ remaining: Duration) -> Int32 {
        var limit = remaining
        if let timeo = target.options.timeout, timeo < limit { limit = timeo }
        return Int32(clamping: max(limit.wholeMilliseconds, 1))
    }

    func probe(markerFile: String, timeout remaining: Duration) -> NFSProbeResult {
        let ms = timeoutMilliseconds(remaining)
        let ctx: OpaquePointer
        if let existing = context {
            ctx = existing
            nfs_set_timeout(ctx, ms)
        } else {
            switch connect(timeoutMilliseconds: ms) {
            case .mounted(let fresh): ctx = fresh
            case .failed(let failure): return .failed(failure)
            }
        }

        var vfs = nfs_statvfs_64()
        let vfsStatus = nfs_statvfs64(ctx, "/", &vfs)
        if vfsStatus < 0 {
            let failure = classify(vfsStatus, ctx, during: "statvfs", timeoutMilliseconds: ms)
            destroy(reason: failure.description)
            return .failed(failure)
        }
        let blockSize = vfs.f_frsize != 0 ? vfs.f_frsize : vfs.f_bsize
        let total = Int64(clamping: vfs.f_blocks.multipliedReportingOverflow(by: blockSize).partialValue)
        let free = Int64(clamping: vfs.f_bavail.multipliedReportingOverflow(by: blockSize).partialValue)

        guard !markerFile.isEmpty else {
            return NFSProbeResult(reachable: true, markerPresent: nil, freeBytes: free, totalBytes: total)
        }
        let markerPath = markerFile.hasPrefix("/") ? markerFile : "/" + markerFile
        var st = nfs_stat_64()
        let statStatus = nfs_stat64(ctx, markerPath, &st)
        if statStatus == -ENOENT {
            // The server answers fine: keep the context, the share is simply not the one we expect (yet).
            return NFSProbeResult(
                reachable: true, markerPresent: false, freeBytes: free, totalBytes: total, failure: .markerMissing)
        }
        if statStatus < 0 {
            let failure = classify(statStatus, ctx, during: "stat \(markerPath)", timeoutMilliseconds: ms)
            destroy(reason: failure.description)
            return .failed(failure)
        }
        return NFSProbeResult(reachable: true, markerPresent: true, freeBytes: free, totalBytes: total)
    }

    private enum ConnectOutcome {
        case mounted(OpaquePointer)
        case failed(NFSProbeFailure)
    }

    /// Builds and mounts a fresh context. The context is stored only once mounted, so a failed attempt is destroyed
    /// exactly once, here.
    private func connect(timeoutMilliseconds ms: Int32) -> ConnectOutcome {
        guard let ctx = nfs_init_context() else {
            return .failed(.misconfigured("nfs_init_context failed"))
        }
        generation += 1
        let n = Self.contextCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let clientName = "imagestore-\(getpid())-\(Self.processNonce)-\(n)"
        nfs4_set_client_name(ctx, clientName)
        nfs_set_timeout(ctx, ms)
        // We rebuild the context ourselves after any failure; libnfs's own reconnect would only retry inside a call.
        nfs_set_autoreconnect(ctx, 0)

        let url = target.url
        guard let parsed = nfs_parse_url_dir(ctx, url) else {
            let why = errorText(ctx)
            nfs_destroy_context(ctx)
            return .failed(.misconfigured("bad NFS URL \(url): \(why)"))
        }
        defer { nfs_destroy_url(parsed) }
        let status = nfs_mount(ctx, parsed.pointee.server, parsed.pointee.path)
        if status != 0 {
            let failure = classify(status, ctx, during: "mount", timeoutMilliseconds: ms)
            nfs_destroy_context(ctx)
            logger.debug("NFS mount failed", metadata: ["target": "\(target)", "failure": "\(failure)"])
            return .failed(failure)
        }
        context = ctx
        logger.debug(
            "NFS context mounted",
            metadata: ["target": "\(target)", "client": "\(clientName)", "generation": "\(generation)"])
        return .mounted(ctx)
    }

    /// Maps a libnfs `-errno` and its message to a probe failure.
    private func classify(
        _ status: Int32, _ ctx: OpaquePointer, during operation: String, timeoutMilliseconds ms: Int32
    )
        -> NFSProbeFailure
    {
        let text = errorText(ctx)
        let why = "\(operation): \(text.isEmpty ? String(cString: strerror(-status)) : text)"
        let lower = text.lowercased()
        if status == -ETIMEDOUT || lower.contains("timed out") || lower.contains("timeout") {
            return .timedOut(.milliseconds(ms))
        }
        if operation == "mount" {
            // The server answered the mount with an NFS status (path not exported, access denied…): it is there but
            // refuses. Anything else (no connection, connection dropped) means we never got an NFS answer.
            if lower.contains("nfs4err") || lower.contains("mnt3err") || lower.contains("nfs3err")
                || status == -ENOENT || status == -EACCES || status == -EPERM
            {
                return .mountFailed(why)
            }
        }
        return .unreachable(why)
    }

    private func errorText(_ ctx: OpaquePointer) -> String {
        guard let cString = nfs_get_error(ctx) else { return "" }
        return String(cString: cString)
    }

    /// Drops the context; the next probe makes a new one.
    func destroy(reason: String) {
        guard let ctx = context else { return }
        context = nil
        logger.debug("NFS context dropped", metadata: ["target": "\(target)", "reason": "\(reason)"])
        nfs_destroy_context(ctx)
    }
}
