#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ImageStoreCore
import NIOCore
import Synchronization
@testable import ImageStoreStorage
import Testing

/// Downloads sent with `sendfile` (`FileSendingReader`): the first chunk through the HTTP writer, the rest
/// from the file straight into the socket once the writer has sent the first. Here the socket is one end
/// of a Unix socket pair with a small send buffer (so `sendfile` often finds it full), drained by a thread
/// of its own. Nothing here blocks a cooperative-pool thread (the pool may have two: a blocked one starved
/// the reader's own tasks), and every wait is bounded, so a broken send fails its test instead of hanging
/// the test process.
@Suite struct SendfileTests {
    @Test(
        arguments: [
            nil, 0..<1, 0..<(1 << 20), (1 << 20) - 1..<(1 << 20) + 1, 3000..<(5 << 20) + 123, (5 << 20) + 122..<(5 << 20) + 123,
        ] as [Range<Int64>?])
    func send_deliversExactlyTheBytes_ofTheFileOrRange(range: Range<Int64>?) async throws {
        let (store, directory, id, data) = try await storeWithImage(size: (5 << 20) + 123)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: range) as? any FileSendingReader)
        let expected = range.map { Array(data[Int($0.lowerBound)..<Int($0.upperBound)]) } ?? data
        let past = max(0, expected.count - (1 << 20))
        // With MiBs past the first chunk, the peer stops reading a little after it until the reader waited
        // for the socket: the send must find it full, wait, and go on.
        let pair = try SocketPair(holdingAfter: past > 1 << 20 ? (1 << 20) + (64 << 10) : nil)
        defer { pair.closeSender() }
        try await bounded("the send") {
            try await reader.send(writingFirstChunk: { chunk in try await pair.writeAll(chunk) }, into: pair)
        }
        pair.closeSender()
        let received = try await pair.received()
        #expect(received.count == expected.count)
        #expect(firstDifference(received, expected) == nil)
        #expect(reader.length == Int64(expected.count))
        // Everything but the first chunk (1 MiB at most) went with sendfile, and was reported.
        #expect(pair.reported.withLock { $0 } == past)
        if past > 1 << 20 { #expect(pair.waits.load(ordering: .relaxed) > 0) }
    }

    /// The socket is shared with NIO: no byte may go out with sendfile before the first chunk (and the
    /// headers queued before it) left, which is when the writer frees it.
    @Test func send_waitsUntilTheFirstChunkIsFreed() async throws {
        let (store, directory, id, data) = try await storeWithImage(size: 3 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: nil) as? any FileSendingReader)
        let pair = try SocketPair()
        defer { pair.closeSender() }
        let held = Mutex<ByteBuffer?>(nil)
        let sending = Task {
            try await reader.send(writingFirstChunk: { chunk in held.withLock { $0 = chunk } }, into: pair)
        }
        defer { sending.cancel() }
        try await bounded("the first chunk") {
            while held.withLock({ $0 == nil }) { try await Task.sleep(for: .milliseconds(10)) }
        }
        // Not a timing check: if the send did not wait for the buffer, it had this long to show it.
        try await Task.sleep(for: .milliseconds(300))
        #expect(pair.receivedCount() == 0, "sendfile ran while the first chunk was still queued")
        // The writer sends it and lets go (the buffer lives only for this call).
        try await pair.writeAll(
            held.withLock { buffer in
                defer { buffer = nil }
                return buffer!
            })
        try await bounded("the send") { try await sending.value }
        pair.closeSender()
        #expect(firstDifference(try await pair.received(), data) == nil)
    }

    /// Images are immutable; a file that shrank after it was opened is not the image any more: the send
    /// fails (the server then cuts the connection, the client sees a short body), nothing past the end goes.
    @Test func send_whenTheFileShrank_throws_afterOnlyTheImagesBytes() async throws {
        let (store, directory, id, data) = try await storeWithImage(size: 4 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: nil) as? any FileSendingReader)
        #expect(truncate(directory + "/" + id.description, 2 << 20) == 0)
        let pair = try SocketPair()
        defer { pair.closeSender() }
        let outcome = try await bounded("the send") { () -> (any Error)? in
            do {
                try await reader.send(writingFirstChunk: { chunk in try await pair.writeAll(chunk) }, into: pair)
                return nil
            } catch {
                return error
            }
        }
        #expect(outcome is ImageStoreError, "\(String(describing: outcome))")
        pair.closeSender()
        let received = try await pair.received()
        #expect(received.count == 2 << 20)
        #expect(firstDifference(received, Array(data[0..<received.count])) == nil)
    }

    /// A client that went away is not a store failure: its own error, and the reader is closed.
    @Test func send_whenThePeerClosed_throwsClientConnectionClosed() async throws {
        let (store, directory, id, _) = try await storeWithImage(size: 3 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: nil) as? any FileSendingReader)
        let pair = try SocketPair()
        defer { pair.closeSender() }
        try await pair.closeReceiver()
        let first = try await bounded("the send") { () -> (any Error)? in
            do {
                try await reader.send(writingFirstChunk: { _ in }, into: pair)
                return nil
            } catch {
                return error
            }
        }
        #expect(first is ClientConnectionClosed, "\(String(describing: first))")
        // Closed: a second use is refused, not a read of a closed descriptor.
        let second = try await bounded("the second send") { () -> (any Error)? in
            do {
                try await reader.send(writingFirstChunk: { _ in }, into: pair)
                return nil
            } catch {
                return error
            }
        }
        #expect(second is ImageStoreError, "\(String(describing: second))")
    }

    /// The socket's descriptor is only used while the socket holds it open: a store call that starts after
    /// the download closed the socket (its deadline passed while the call was queued) gets nil, never a
    /// number that another connection may have by then.
    @Test func send_afterTheSocketClosed_neverUsesItsDescriptor() async throws {
        let (store, directory, id, _) = try await storeWithImage(size: 3 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: nil) as? any FileSendingReader)
        let pair = try SocketPair()
        pair.closeSender()
        let outcome = try await bounded("the send") { () -> (any Error)? in
            do {
                try await reader.send(writingFirstChunk: { _ in }, into: pair)
                return nil
            } catch {
                return error
            }
        }
        #expect(outcome is ClientConnectionClosed, "\(String(describing: outcome))")
        #expect(pair.reported.withLock { $0 } == 0)
        try await pair.closeReceiver()
    }

    private func storeWithImage(size: Int) async throws -> (FilesystemImageStore, String, ImageID, [UInt8]) {
        let directory = try makeTemporaryDirectory()
        let store = FilesystemImageStore(directory: directory, logger: testLogger)
        let id = ImageID()
        let data = randomBytes(size)
        let writer = try await store.beginWrite(id, expectedSize: Int64(size))
        try await writer.write(ByteBuffer(bytes: data))
        _ = try await writer.finish()
        try await writer.commit()
        return (store, directory, id, data)
    }
}

/// Where two byte arrays differ first (or where the shorter one ends), nil when they are equal. Not `==`
/// in `#expect`: on a failure the testing library diffs the two arrays, which for MiBs takes hours.
private func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    let common = min(a.count, b.count)
    if let index = (0..<common).first(where: { a[$0] != b[$0] }) { return index }
    return a.count == b.count ? nil : common
}

/// A wait in these tests that did not end: the test fails instead of hanging.
private struct NotWithin: Error, CustomStringConvertible {
    let what: String
    var description: String { "\(what) did not finish within the test's bound" }
}

/// Runs `operation` and throws once `timeout` passed first (through `value(within:)`, the project's
/// deadline primitive). The bound is generous: it turns a hang into a failure, it measures nothing.
private func bounded<T: Sendable>(
    _ what: String, within timeout: Duration = .seconds(60), _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = await value(within: timeout, cancelAtDeadline: true) { () -> Result<T, any Error> in
        do { return .success(try await operation()) } catch { return .failure(error) }
    }
    guard let outcome else { throw NotWithin(what: what) }
    return try outcome.get()
}

/// A non-blocking socket with a 64 KiB send buffer, and a thread of its own reading everything from its
/// peer (polling with a timeout, so it ends however the test does). With `holdingAfter`, the thread stops
/// reading after that many bytes until the sender first waits for room.
private final class SocketPair: FileSendSocket, Sendable {
    private let descriptor: Int32
    private let drain: Drain
    private let senderOpen = Mutex(true)
    /// What the reader reported as sent with sendfile.
    let reported = Mutex(0)
    /// How often the reader waited for the socket to take more.
    let waits = Atomic(0)

    /// The peer's side: what its thread read, and the end of it.
    private final class Drain: Sendable {
        let bytes = Mutex<[UInt8]>([])
        /// The bytes read, once the peer saw the end (or was told to stop).
        let done = ResumeOnce<[UInt8]?>()
        let stop = Atomic(false)
        let sawAWait = Atomic(false)
    }

    init(holdingAfter hold: Int? = nil) throws {
        // The server's process ignores SIGPIPE (NIO does on Linux); a test process with no NIO socket must
        // too, or a send into a closed pair kills it instead of failing with EPIPE.
        _ = signal(SIGPIPE, SIG_IGN)
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw POSIXError(.EIO) }
        descriptor = fds[0]
        let peer = fds[1]
        var size: Int32 = 64 << 10
        setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        let drain = Drain()
        self.drain = drain
        Thread {
            var block = [UInt8](repeating: 0, count: 1 << 16)
            let end = Date().addingTimeInterval(120)
            while !drain.stop.load(ordering: .acquiring), Date() < end {
                if let hold, !drain.sawAWait.load(ordering: .acquiring), drain.bytes.withLock({ $0.count }) >= hold {
                    usleep(1000)
                    continue
                }
                var entry = pollfd(fd: peer, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 100) != 0 else { continue }
                var wanted = block.count
                if let hold, !drain.sawAWait.load(ordering: .acquiring) {
                    wanted = min(wanted, max(1, hold - drain.bytes.withLock { $0.count }))
                }
                let n = read(peer, &block, wanted)
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                if n <= 0 { break }
                drain.bytes.withLock { $0 += block[0..<n] }
            }
            close(peer)
            drain.done.resume(drain.bytes.withLock { $0 })
        }.start()
    }

    deinit { closeSender() }

    func withDescriptor<T>(_ body: (Int32?) throws -> T) rethrows -> T {
        try senderOpen.withLock { open in try body(open ? descriptor : nil) }
    }

    func waitUntilWritable() async throws {
        waits.add(1, ordering: .relaxed)
        drain.sawAWait.store(true, ordering: .releasing)
        let descriptor = self.descriptor
        try await bounded("the socket's room") {
            var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            while poll(&entry, 1, 0) == 0 { try await Task.sleep(for: .milliseconds(1)) }
        }
    }

    /// What the HTTP writer would do with the first chunk: the whole buffer into the socket, without
    /// blocking a thread (a full socket is retried after a short sleep), bounded.
    func writeAll(_ buffer: ByteBuffer) async throws {
        let bytes = Array(buffer.readableBytesView)
        try await bounded("the first chunk's write") { [self] in
            var done = 0
            while done < bytes.count {
                let n = withDescriptor { fd in
                    fd.map { fd in bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) } } ?? -1
                }
                if n > 0 {
                    done += n
                } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                    try await Task.sleep(for: .milliseconds(1))
                } else {
                    throw POSIXError(.EPIPE)
                }
            }
        }
    }

    func sent(_ count: Int) { reported.withLock { $0 += count } }

    func receivedCount() -> Int { drain.bytes.withLock { $0.count } }

    /// Idempotent; the peer then sees the end.
    func closeSender() {
        senderOpen.withLock { open in
            if open { close(descriptor) }
            open = false
        }
    }

    /// Closes the peer (its thread does, and stops).
    func closeReceiver() async throws {
        drain.stop.store(true, ordering: .releasing)
        _ = try await received()
    }

    /// Everything the peer got, once the sender closed. Once per pair.
    func received() async throws -> [UInt8] {
        guard let bytes = await delivery(drain.done, within: .seconds(60)) else { throw NotWithin(what: "the peer's reading") }
        return bytes
    }
}
