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
/// of a Unix socket pair with a small send buffer (so `sendfile` often finds it full), drained by a thread.
/// Serialized: the helpers block a thread (semaphore, poll), and the cooperative pool may have only two.
@Suite(.serialized) struct SendfileTests {
    @Test(
        arguments: [
            nil, 0..<1, 0..<(1 << 20), (1 << 20) - 1..<(1 << 20) + 1, 3000..<(5 << 20) + 123, (5 << 20) + 122..<(5 << 20) + 123,
        ] as [Range<Int64>?])
    func send_deliversExactlyTheBytes_ofTheFileOrRange(range: Range<Int64>?) async throws {
        let (store, directory, id, data) = try await storeWithImage(size: (5 << 20) + 123)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: range) as? any FileSendingReader)
        let pair = try SocketPair()
        try await reader.send(writingFirstChunk: { chunk in try pair.writeAll(chunk) }, into: pair)
        pair.closeSender()
        let expected = range.map { Array(data[Int($0.lowerBound)..<Int($0.upperBound)]) } ?? data
        #expect(pair.received() == expected)
        #expect(reader.length == Int64(expected.count))
        // Everything but the first chunk (1 MiB at most) went with sendfile, and was reported.
        #expect(pair.reported.withLock { $0 } == max(0, expected.count - (1 << 20)))
    }

    /// The socket is shared with NIO: no byte may go out with sendfile before the first chunk (and the
    /// headers queued before it) left, which is when the writer frees it.
    @Test func send_waitsUntilTheFirstChunkIsFreed() async throws {
        let (store, directory, id, data) = try await storeWithImage(size: 3 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: nil) as? any FileSendingReader)
        let pair = try SocketPair()
        let held = Mutex<ByteBuffer?>(nil)
        let sending = Task {
            try await reader.send(writingFirstChunk: { chunk in held.withLock { $0 = chunk } }, into: pair)
        }
        while held.withLock({ $0 == nil }) { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(pair.receivedCount() == 0, "sendfile ran while the first chunk was still queued")
        // The writer sends it and lets go.
        let first = held.withLock { buffer in
            defer { buffer = nil }
            return buffer!
        }
        try pair.writeAll(first)
        try await sending.value
        pair.closeSender()
        #expect(pair.received() == data)
    }

    /// Images are immutable; a file that shrank after it was opened is not the image any more: the send
    /// fails (the server then cuts the connection, the client sees a short body), nothing past the end goes.
    @Test func send_whenTheFileShrank_throws_afterOnlyTheImagesBytes() async throws {
        let (store, directory, id, data) = try await storeWithImage(size: 4 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: nil) as? any FileSendingReader)
        #expect(truncate(directory + "/" + id.description, 2 << 20) == 0)
        let pair = try SocketPair()
        await #expect(throws: ImageStoreError.self) {
            try await reader.send(writingFirstChunk: { chunk in try pair.writeAll(chunk) }, into: pair)
        }
        pair.closeSender()
        let received = pair.received()
        #expect(received.count == 2 << 20)
        #expect(received == Array(data[0..<received.count]))
    }

    /// A client that went away is not a store failure: its own error, and the reader is closed.
    @Test func send_whenThePeerClosed_throwsClientConnectionClosed() async throws {
        let (store, directory, id, _) = try await storeWithImage(size: 3 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reader = try #require(try await store.read(id, range: nil) as? any FileSendingReader)
        let pair = try SocketPair()
        pair.closeReceiver()
        await #expect(throws: ClientConnectionClosed.self) {
            try await reader.send(writingFirstChunk: { _ in }, into: pair)
        }
        // Closed: a second use is refused, not a read of a closed descriptor.
        await #expect(throws: ImageStoreError.self) {
            try await reader.send(writingFirstChunk: { _ in }, into: pair)
        }
        pair.closeSender()
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

/// A non-blocking socket with a 64 KiB send buffer, and a thread reading everything from its peer.
private final class SocketPair: FileSendSocket, @unchecked Sendable {
    let descriptor: Int32
    private let peer: Int32
    private let bytes = Mutex<[UInt8]>([])
    private let done = DispatchSemaphore(value: 0)
    private var drainer: Thread?

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw POSIXError(.EIO) }
        descriptor = fds[0]
        peer = fds[1]
        var size: Int32 = 64 << 10
        setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        let thread = Thread { [self] in
            var block = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = read(peer, &block, block.count)
                if n <= 0 { break }
                bytes.withLock { $0 += block[0..<n] }
            }
            done.signal()
        }
        thread.start()
        drainer = thread
    }

    func waitUntilWritable() async throws {
        var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        while poll(&entry, 1, 0) == 0 { try await Task.sleep(for: .milliseconds(1)) }
    }

    /// What the HTTP writer would do with the first chunk (blocking here, for the test).
    func writeAll(_ buffer: ByteBuffer) throws {
        try buffer.withUnsafeReadableBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(descriptor, raw.baseAddress! + done, raw.count - done)
                if n > 0 {
                    done += n
                } else if errno == EAGAIN {
                    var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&entry, 1, 1000)
                } else {
                    throw POSIXError(.EPIPE)
                }
            }
        }
    }

    /// What the reader reported as sent with sendfile.
    let reported = Mutex(0)
    func sent(_ count: Int) { reported.withLock { $0 += count } }

    func receivedCount() -> Int { bytes.withLock { $0.count } }

    func closeSender() { close(descriptor) }

    func closeReceiver() {
        shutdown(peer, Int32(SHUT_RDWR))
        done.wait()
        close(peer)
    }

    /// Everything the peer got, once the sender closed.
    func received() -> [UInt8] {
        done.wait()
        close(peer)
        return bytes.withLock { $0 }
    }
}
