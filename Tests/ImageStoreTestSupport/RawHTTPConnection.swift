import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection for what a well-behaved client library will not do: stop mid-body,
/// stall, wait for `100 Continue`, or read a body slowly and see where it ends.
public final class RawHTTPConnection: @unchecked Sendable {
    public let fd: Int32

    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            offset += n
        }
    }

    /// Reads until `marker` appears, the peer closes or resets, or `timeout` passes. The timeout is the
    /// caller's, not the socket's 10 s receive timeout: a starved server may take longer to answer. The
    /// default is generous: it bounds a wait for an answer, it is not a deadline under test.
    public func receive(until marker: String, timeout: TimeInterval = 30) -> String {
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard waitReadable(before: deadline) else { break }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { continue }
            if n <= 0 { break }
            received += buffer[0..<n]
            if String(decoding: received, as: UTF8.self).contains(marker) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Whether something (bytes, the end, a reset) can be read before `deadline`.
    private func waitReadable(before deadline: Date) -> Bool {
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32(min(left * 1000, 1000).rounded(.up)))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return true }  // let recv report the error
        }
    }

    /// Abortive close (RST), like a client that crashed.
    public func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    public func closeNormally() { close(fd) }

    /// Reads what arrives until the peer closes (or `timeout` passes); returns the bytes and whether
    /// the peer closed.
    public func receiveUntilClosed(timeout: TimeInterval) -> (bytes: [UInt8], closed: Bool) {
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard waitReadable(before: deadline) else { break }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { return (received, true) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                return (received, true)  // reset
            }
            received += buffer[0..<n]
        }
        return (received, false)
    }
}

/// How a raw upload's body is framed: the header lines that say so.
public enum RawUploadFraming: Sendable {
    /// `Content-Length: n`.
    case contentLength(Int)
    /// `Transfer-Encoding: chunked`; the caller sends the chunks (or stops before the last one).
    case chunked
    /// Header lines as given, each ending in CRLF (a declared size alone, no framing at all…).
    case headers(String)

    var lines: String {
        switch self {
        case .contentLength(let length): "Content-Length: \(length)\r\n"
        case .chunked: "Transfer-Encoding: chunked\r\n"
        case .headers(let lines): lines
        }
    }
}

extension RawHTTPConnection {
    /// Opens a connection and sends the head of an `application/octet-stream` PUT to `path` (an image's
    /// `/file` or `/stage`), then `body`, all off the cooperative pool; the connection stays open for
    /// what the test does next: send the rest, stall, close, reset, read the answer.
    public static func startUpload(
        port: Int, path: String, _ framing: RawUploadFraming, sending body: [UInt8] = []
    ) async throws -> RawHTTPConnection {
        try await offPool {
            let connection = try RawHTTPConnection(port: port)
            do {
                try connection.send(
                    "PUT \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\(framing.lines)\r\n")
                if !body.isEmpty { try connection.send(body) }
            } catch {
                connection.closeNormally()
                throw error
            }
            return connection
        }
    }
}

/// Runs blocking socket work on its own OS thread: a test blocking the cooperative pool (2 threads on
/// this machine) would starve the server it is talking to, which runs in the same process.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
