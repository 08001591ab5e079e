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
    let descriptor: Int32
    private let channel: any Channel
    private let waiter: WritableWaiter
    private let onSent: @Sendable (Int) -> Void

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

    func waitUntilWritable() async throws {
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
        let channel = self.channel
        await waiter.wait(descriptor, while: { channel.isActive })
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
    }

    /// Ends the send: forgets the socket in the waiter, closes the duplicate (NIO's descriptor stays).
    func close() {
        waiter.forget(descriptor)
        Glibc.close(descriptor)
    }
}

/// One thread waiting in its own epoll for the sockets of `sendfile` downloads to take more bytes (NIO's
/// readiness is about its own queue, which these bytes bypass). Waking only resumes a task.
final class WritableWaiter: Sendable {
    /// nil when the system gives no epoll descriptor (then downloads copy).
    static let shared: WritableWaiter? = {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { return nil }
        let waiter = WritableWaiter(epoll: epoll)
        let thread = Thread { waiter.run() }
        thread.name = "imagestore.sendfile-wait"
        thread.start()
        return waiter
    }()

    private let epoll: Int32
    /// Per socket: whether epoll knows it, and the task waiting for it.
    private let state = Mutex<[Int32: (registered: Bool, waiting: CheckedContinuation<Void, Never>?)]>([:])

    private init(epoll: Int32) { self.epoll = epoll }

    /// Returns when `fd` is writable, in error or hung up, or woken (`wake`: the channel closed).
    func wait(_ fd: Int32, while isOpen: () -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let registered = state.withLock { state -> Bool in
                let known = state[fd]?.registered ?? false
                state[fd] = (true, continuation)
                return known
            }
            var event = epoll_event()
            event.events = EPOLLOUT.rawValue | EPOLLONESHOT.rawValue
            event.data.fd = fd
            if epoll_ctl(epoll, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event) != 0 {
                wake(fd)  // the caller's sendfile will tell what is wrong
            }
            if !isOpen() { wake(fd) }  // closed before the wait was stored
        }
    }

    /// A spurious wake (a descriptor number reused) only costs the sender one `sendfile` that finds the
    /// socket full.
    func wake(_ fd: Int32) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let entry = state[fd] else { return nil }
            state[fd] = (entry.registered, nil)
            return entry.waiting
        }
        continuation?.resume()
    }

    /// Before the descriptor is closed: epoll keys on the open socket, not the number.
    func forget(_ fd: Int32) {
        let entry = state.withLock { $0.removeValue(forKey: fd) }
        if entry?.registered == true { epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil) }
        entry?.waiting?.resume()
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let count = epoll_wait(epoll, &events, Int32(events.count), -1)
            guard count > 0 else { continue }
            for event in events[0..<Int(count)] { wake(event.data.fd) }
        }
    }
}
