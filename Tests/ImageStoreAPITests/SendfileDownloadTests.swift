#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import ImageStoreAPI
import ImageStoreTestSupport
import NIOCore
import Synchronization
import Testing

/// Downloads from the filesystem store go out with sendfile (docs/performance.md): the same bytes and
/// headers as the copying path, Range included, and the connection stays usable afterwards. (Bodies that
/// fit in the first chunk are copied: nothing would be left to send with sendfile.)
@Suite struct SendfileDownloadTests {
    @Test func download_withSendfile_isExact_rangesToo_connectionReusable() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let data = randomBytes(3 << 20 + 5)
            #expect(try await client.upload(id, data).status == .noContent)
            let before = SendfileSocket.sends.load(ordering: .relaxed)
            for _ in 0..<2 {
                let download = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
                #expect(download.status == .ok)
                #expect(download.headers[.contentLength] == "\(data.count)")
                #expect(firstDifference(Array(download.body.readableBytesView), data) == nil)
            }
            for (first, last) in [
                (0, 0), ((1 << 20) - 1, 1 << 20), (5, (2 << 20) + 7), ((1 << 20) - 1, data.count - 1), (data.count - 1, data.count - 1),
            ] {
                let response = try await client.execute(
                    uri: "/v2/images/\(id)/file", method: .get, headers: [.range: "bytes=\(first)-\(last)"])
                #expect(response.status == .partialContent)
                #expect(response.headers[.contentRange] == "bytes \(first)-\(last)/\(data.count)")
                #expect(firstDifference(Array(response.body.readableBytesView), Array(data[first...last])) == nil)
            }
            // A JSON request after the downloads: nothing of theirs is left in the connection.
            #expect(try await client.image(id)["status"] == "active")
            #expect(SendfileSocket.sends.load(ordering: .relaxed) - before >= 4, "the downloads did not use sendfile")
        }
    }

    /// A client that vanishes mid-download (after the head only, or while sendfile waits for its socket to
    /// take more): the server keeps no descriptor of that connection (NIO's nor the sendfile duplicate), the
    /// waiter thread ends once idle, and the server goes on serving.
    @Test(arguments: [0, 2 << 20])
    func clientDisconnectMidDownload_leavesNoDescriptorNorThread(readBeforeLeaving: Int) async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            // Far more than the socket buffers hold (the client's is 64 KiB): the server is still sending
            // when the client leaves.
            // Random bytes are made one at a time (slow in a debug build): a random block repeated, its size
            // prime to the chunk's so that any misplaced offset shows.
            let block = randomBytes((1 << 20) + 7)
            var data = [UInt8]()
            while data.count < 16 << 20 { data += block }
            #expect(try await client.upload(id, data).status == .noContent)
            let serverPort = try #require(client.port)
            let sendsBefore = SendfileSocket.sends.load(ordering: .relaxed)
            let (connection, clientPort) = try await offPool { () throws -> (RawHTTPConnection, Int) in
                let connection = try RawHTTPConnection(port: serverPort)
                var size: Int32 = 64 << 10
                setsockopt(connection.fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
                try connection.send("GET /v2/images/\(id)/file HTTP/1.1\r\nHost: x\r\n\r\n")
                let head = connection.receive(until: "\r\n\r\n")
                guard head.hasPrefix("HTTP/1.1 200") else { throw POSIXError(.EPROTO) }
                var left = readBeforeLeaving
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while left > 0 {
                    let n = recv(connection.fd, &buffer, min(buffer.count, left), 0)
                    guard n > 0 else { throw POSIXError(.ECONNRESET) }
                    left -= n
                }
                return (connection, localPort(of: connection.fd))
            }
            // The download is under way with sendfile: NIO's descriptor and the duplicate, both open.
            try await waitFor { SendfileSocket.sends.load(ordering: .relaxed) > sendsBefore }
            try await waitFor { serverDescriptors(port: serverPort, peerPort: clientPort).count == 2 }
            // The socket, by inode: once reset, it has no addresses to be found by.
            let sockets = Set(serverDescriptors(port: serverPort, peerPort: clientPort).map(\.target))
            #expect(sockets.count == 1)
            if readBeforeLeaving > 0 {
                // Past the first chunk, the client not reading: sendfile found the socket full and waits.
                try await waitFor { WritableWaiter.shared?.isRunning == true }
            }
            connection.reset()
            try await waitFor { descriptors(of: sockets).isEmpty }
            #expect(descriptors(of: sockets).isEmpty, "a descriptor of the connection leaked")
            // Another download, whole, on the test client's connection.
            let again = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(again.status == .ok)
            #expect(again.body.readableBytes == data.count)
            #expect(SHA256.hash(data: again.body.readableBytesView) == SHA256.hash(data: data))
            try await waitFor { WritableWaiter.shared?.isRunning != true && !threadNames().contains(WritableWaiter.threadName) }
            #expect(!threadNames().contains(WritableWaiter.threadName), "the waiter thread did not end")
        }
    }

    @Test func descriptorNumber_isReadFromNIOsDescription() {
        #expect(SendfileSocket.descriptorNumber(in: "SocketChannel { BaseSocket { fd=17 }, active = true }") == 17)
        #expect(SendfileSocket.descriptorNumber(in: "EmbeddedChannel") == nil)
    }
}

/// Where two byte arrays differ first (or where the shorter one ends), nil when they are equal. Not `==`
/// in `#expect`: on a failure the testing library diffs the two arrays, which for MiBs takes hours.
private func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    let common = min(a.count, b.count)
    if let index = (0..<common).first(where: { a[$0] != b[$0] }) { return index }
    return a.count == b.count ? nil : common
}

/// The local port of a connected socket.
private func localPort(of fd: Int32) -> Int {
    addressPorts(of: fd)?.local ?? -1
}

/// The local and peer ports of a descriptor if it is an IPv4/IPv6 socket.
private func addressPorts(of fd: Int32) -> (local: Int, peer: Int)? {
    func port(_ call: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let code = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, &length) } }
        guard code == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET: return withUnsafeBytes(of: storage) { Int(UInt16(bigEndian: $0.load(as: sockaddr_in.self).sin_port)) }
        case AF_INET6: return withUnsafeBytes(of: storage) { Int(UInt16(bigEndian: $0.load(as: sockaddr_in6.self).sin6_port)) }
        default: return nil
        }
    }
    guard let local = port({ getsockname(fd, $0, $1) }), let peer = port({ getpeername(fd, $0, $1) }) else { return nil }
    return (local, peer)
}

/// This process's descriptors of the server's end of the connection from `peerPort` to `port` (the test
/// client's own end has them the other way round), with what each is (`socket:[inode]`).
private func serverDescriptors(port: Int, peerPort: Int) -> [(fd: Int32, target: String)] {
    openDescriptors().filter { fd, _ in
        guard let ports = addressPorts(of: fd) else { return false }
        return ports.local == port && ports.peer == peerPort
    }
}

/// This process's descriptors of any of `sockets`.
private func descriptors(of sockets: Set<String>) -> [Int32] {
    openDescriptors().filter { sockets.contains($0.target) }.map(\.fd)
}

/// This process's descriptors and what each is (`/proc/self/fd`'s links).
private func openDescriptors() -> [(fd: Int32, target: String)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return names.compactMap { name in
        guard let fd = Int32(name),
            let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)")
        else { return nil }
        return (fd, target)
    }
}

/// The names of this process's threads.
private func threadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { task in
        (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
