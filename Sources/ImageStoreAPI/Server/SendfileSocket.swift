#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import ImageStoreCore
import NIOCore
import Synchronization

/// The socket of an HTTP connection, for a download sent with `sendfile` (docs/performance.md, "sendfile").
///
/// NIO does not hand out a channel's descriptor; its `description` names it (`fd=N`). That number is only
/// trusted after a duplicate of it, taken on the channel's event loop (where NIO would close it), has the
/// channel's own local and peer addresses: a TCP connection's address pair names one socket. Anything
/// else (a future NIO, TLS, a Unix socket) gives nil, and the download takes the copying path.
/// The duplicate keeps the socket open while a store thread sends; NIO's writes are idle meanwhile, since
/// Hummingbird waits for the response body. SIGPIPE is ignored process-wide by NIO on Linux.
final class SendfileSocket: FileSendSocket {
    private let descriptor: Int32
    private let channel: any Channel
    private let waiter: WritableWaiter
    private let onSent: @Sendable (Int) -> Void
    /// Store calls inside `withDescriptor`, and whether the download closed the socket: the last of them
    /// closes the duplicate, so a call that outlived its deadline (a hung share) or started after it was
    /// given up never reaches a number that another connection may have by then.
    private let use = Mutex<(users: Int, closed: Bool)>((0, false))

    private init(descriptor: Int32, channel: any Channel, waiter: WritableWaiter, onSent: @escaping @Sendable (Int) -> Void) {
        self.descriptor = descriptor
        self.channel = channel
        self.waiter = waiter
        self.onSent = onSent
    }

    /// Off with `IMAGESTORE_BENCH_NO_SENDFILE=1` (same-binary A/B in scripts/bench-download-ab).
    static let enabled = getenv("IMAGESTORE_BENCH_NO_SENDFILE").map { String(cString: $0) != "1" } ?? true

    /// Downloads that got a socket to send into (for the tests).
    static let sends = Atomic(0)

    /// A duplicate of the channel's socket descriptor, or nil when it cannot be had for sure. `onSent` is
    /// told the bytes of each `sendfile` (they bypass the writer, which counts the others).
    static func open(_ channel: any Channel, onSent: @escaping @Sendable (Int) -> Void) async -> SendfileSocket? {
        guard enabled, let waiter = WritableWaiter.shared, let local = channel.localAddress,
            let remote = channel.remoteAddress, local.protocol == .inet || local.protocol == .inet6
        else { return nil }
        let fd = try? await channel.eventLoop.submit { () -> Int32 in
            // Bytes written past the pipeline must be the bytes the client reads: never under TLS (this
            // server has no TLS listener; a proxy terminates it), which a future handler would show here.
            let handlers = channel.pipeline.debugDescription
            guard channel.isActive, !handlers.contains("SSL"), !handlers.contains("TLS"),
                let number = descriptorNumber(in: "\(channel)")
            else { return -1 }
            let copy = fcntl(number, F_DUPFD_CLOEXEC, 0)
            guard copy >= 0 else { return -1 }
            // Non-blocking, as NIO keeps it: a full socket must answer EAGAIN, never hold a store thread
            // past its deadline because a client reads slowly.
            guard fcntl(copy, F_GETFL) & O_NONBLOCK != 0 else {
                Glibc.close(copy)
                return -1
            }
            guard let found = addresses(of: copy), same(found.local, local), same(found.peer, remote) else {
                Glibc.close(copy)
                return -1
            }
            return copy
        }.get()
        guard let fd, fd >= 0 else { return nil }
        sends.add(1, ordering: .relaxed)
        let socket = SendfileSocket(descriptor: fd, channel: channel, waiter: waiter, onSent: onSent)
        // A connection closed by the server (shutdown) while a send waits: wake it to notice.
        channel.closeFuture.whenComplete { _ in waiter.wake(fd) }
        return socket
    }

    /// `fd=N` in NIO's description of a socket channel.
    static func descriptorNumber(in description: String) -> Int32? {
        guard let range = description.range(of: "fd=") else { return nil }
        return Int32(description[range.upperBound...].prefix { $0.isNumber })
    }

    private static func same(_ a: SocketAddress, _ b: SocketAddress) -> Bool {
        a.protocol == b.protocol && a.ipAddress != nil && a.ipAddress == b.ipAddress && a.port == b.port
    }

    /// The descriptor's local and peer addresses; nil for anything but an IP socket.
    private static func addresses(of fd: Int32) -> (local: SocketAddress, peer: SocketAddress)? {
        func address(_ call: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> SocketAddress? {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let code = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, &length) }
            }
            guard code == 0 else { return nil }
            switch Int32(storage.ss_family) {
            case AF_INET:
                return withUnsafeBytes(of: storage) { raw in
                    SocketAddress(raw.load(as: sockaddr_in.self), host: "")
                }
            case AF_INET6:
                return withUnsafeBytes(of: storage) { raw in
                    SocketAddress(raw.load(as: sockaddr_in6.self), host: "")
                }
            default: return nil
            }
        }
        guard let local = address({ getsockname(fd, $0, $1) }), let peer = address({ getpeername(fd, $0, $1) })
        else { return nil }
        return (local, peer)
    }

    func sent(_ count: Int) { onSent(count) }

    func withDescriptor<T>(_ body: (Int32?) throws -> T) rethrows -> T {
        let open = use.withLock { state in
            guard !state.closed else { return false }
            state.users += 1
            return true
        }
        guard open else { return try body(nil) }
        defer {
            let last = use.withLock { state in
                state.users -= 1
                return state.closed && state.users == 0
            }
            if last { Glibc.close(descriptor) }
        }
        return try body(descriptor)
    }

    func waitUntilWritable() async throws {
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
        let channel = self.channel
        await waiter.wait(descriptor, while: { channel.isActive })
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
    }

    /// Ends the send: forgets the socket in the waiter, closes the duplicate (NIO's descriptor stays) — or,
    /// while a store call still uses it (stuck past its deadline on a hung share), shuts the connection
    /// down, so the client sees the end now rather than when the share answers (the socket lives as long
    /// as any descriptor of it; the download failed anyway), and leaves the close to that call. Idempotent.
    func close() {
        waiter.forget(descriptor)
        let closeNow = use.withLock { state in
            guard !state.closed else { return false }
            state.closed = true
            // Under the lock: the descriptor cannot be closed (and its number reused) meanwhile.
            if state.users > 0 { _ = shutdown(descriptor, Int32(SHUT_RDWR)) }
            return state.users == 0
        }
        if closeNow { Glibc.close(descriptor) }
    }
}

/// One thread waiting in `poll` for the sockets of `sendfile` downloads to take more bytes (NIO's readiness
/// is about its own queue, which these bytes bypass). Waking only resumes a task; a pipe tells the thread
/// that the set of sockets changed. The thread starts with the first wait and ends after a second with
/// nothing to wait for, so its `poll` is bounded and an idle server holds no thread for it.
final class WritableWaiter: Sendable {
    /// nil when the system gives no pipe (then downloads copy).
    static let shared: WritableWaiter? = {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return WritableWaiter(wakeRead: fds[0], wakeWrite: fds[1])
    }()

    /// The thread's name (at most 15 characters, Linux's limit), which the tests look for.
    static let threadName = "sendfile-wait"
    /// How long the thread stays with nothing to wait for.
    private static let idleMilliseconds: Int32 = 1000

    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// The tasks waiting, by socket, and whether the thread runs.
    private let state = Mutex<(waiting: [Int32: CheckedContinuation<Void, Never>], running: Bool)>(([:], false))

    private init(wakeRead: Int32, wakeWrite: Int32) {
        self.wakeRead = wakeRead
        self.wakeWrite = wakeWrite
    }

    /// Returns when `fd` is writable, in error or hung up, or woken (`wake`: the channel closed).
    func wait(_ fd: Int32, while isOpen: () -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let start = state.withLock { state in
                state.waiting[fd] = continuation
                defer { state.running = true }
                return !state.running
            }
            if start {
                Thread {
                    // Named from inside: a name set before `start` does not reach the thread on Linux.
                    Thread.current.name = Self.threadName
                    self.run()
                }.start()
            } else {
                var byte: UInt8 = 1
                _ = write(wakeWrite, &byte, 1)  // a full pipe already says "look again"
            }
            if !isOpen() { wake(fd) }  // closed before the wait was stored
        }
    }

    /// A spurious wake (a descriptor number reused) only costs the sender one `sendfile` that finds the
    /// socket full.
    func wake(_ fd: Int32) {
        state.withLock { $0.waiting.removeValue(forKey: fd) }?.resume()
    }

    /// Before the descriptor is closed.
    func forget(_ fd: Int32) { wake(fd) }

    /// Whether the thread runs (for the tests).
    var isRunning: Bool { state.withLock { $0.running } }

    private func run() {
        var drain = [UInt8](repeating: 0, count: 512)
        while true {
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            fds += state.withLock { $0.waiting.keys.map { pollfd(fd: $0, events: Int16(POLLOUT), revents: 0) } }
            let ready = poll(&fds, nfds_t(fds.count), Self.idleMilliseconds)
            if ready == 0 {
                // Decided under the lock: a wait stored after this starts a new thread.
                let idle = state.withLock { state in
                    if state.waiting.isEmpty { state.running = false }
                    return !state.running
                }
                if idle { return }
                continue
            }
            guard ready > 0 else { continue }  // EINTR
            if fds[0].revents != 0 { _ = read(wakeRead, &drain, drain.count) }
            for entry in fds.dropFirst() where entry.revents != 0 { wake(entry.fd) }
        }
    }
}
