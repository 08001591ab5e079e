import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ImageStoreTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import ImageStoreAPI

/// `client_socket_timeout` counts the client's silence while the server waits for it, not while the
/// server itself stops reading (backpressure from a slow request-body consumer). The names match
/// scripts/test's `timing` phase (`stalledClient`): they run on their own.
@Suite struct ClientSocketTimeoutTests {
    /// A server whose PUT handler reads nothing for 2 s, then counts the body; `client_socket_timeout` 0.5 s.
    static func withSlowConsumer(_ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        let router = Router()
        router.put("/slow") { request, _ -> HTTPResponse.Status in
            try await Task.sleep(for: .seconds(2))
            var count = 0
            for try await part in request.body { count += part.readableBytes }
            return count == 8 << 20 ? .noContent : .badRequest
        }
        let app = Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: serverChannelHandlers(clientSocketTimeout: .milliseconds(500)))),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        // The framework's own test client idles too and is closed after 0.5 s: its error after the body
        // finished is not a failure (as in stalledClient_isCutOff_uploadCleanedUp_serverHealthy).
        let finished = TestFlag()
        try await ignoringTeardownErrors(after: finished) {
            try await app.test(.live) { client in
                try await body(client.port!)
                finished.set()
            }
        }
    }

    @Test func stalledClient_onlyBecauseTheServerIsNotReading_isNotCutOff() async throws {
        try await Self.withSlowConsumer { port in
            // 8 MiB: far more than the server buffers (4 body parts) plus both sockets' buffers, so the
            // client is blocked in send, waiting for the server, for most of the 2 s.
            let reply = try await offPool { () -> String in
                let connection = try RawHTTPConnection(port: port)
                defer { connection.closeNormally() }
                try connection.send("PUT /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: \(8 << 20)\r\n\r\n")
                try connection.send([UInt8](repeating: 7, count: 8 << 20))
                return connection.receive(until: "\r\n\r\n", timeout: 30)
            }
            #expect(reply.hasPrefix("HTTP/1.1 204"), "\(reply)")
        }
    }

    @Test func stalledClient_silentWhileTheServerWaits_isCutOff() async throws {
        try await Self.withSlowConsumer { port in
            // Before any request.
            let (_, closedIdle) = try await offPool { () -> ([UInt8], Bool) in
                let connection = try RawHTTPConnection(port: port)
                defer { connection.closeNormally() }
                return connection.receiveUntilClosed(timeout: 10)
            }
            #expect(closedIdle, "a connection that never sent a request was not closed")
            // In the middle of a body the server is reading (after its 2 s pause): the rest never comes.
            let (_, closedMidBody) = try await offPool { () -> ([UInt8], Bool) in
                let connection = try RawHTTPConnection(port: port)
                defer { connection.closeNormally() }
                try connection.send("PUT /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: \(8 << 20)\r\n\r\n")
                try connection.send([UInt8](repeating: 7, count: 1000))
                return connection.receiveUntilClosed(timeout: 15)
            }
            #expect(closedMidBody, "a client silent in the middle of its body was not cut off")
        }
    }
}

/// The handler alone on an embedded channel with a manual clock: whose turn it is decides what counts.
@Suite struct ClientSilenceHandlerTests {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel

    init() throws {
        channel = EmbeddedChannel(handler: ClientSilenceHandler(timeout: .milliseconds(500)), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    func advance(_ milliseconds: Int64) { loop.advanceTime(by: .milliseconds(milliseconds)) }
    func request(_ part: HTTPRequestPart) throws { try channel.writeInbound(part) }
    static let head = HTTPRequestPart.head(HTTPRequest(method: .put, scheme: "http", authority: "localhost", path: "/x"))

    @Test func silentBeforeTheFirstRequest_isClosed() {
        advance(499)
        #expect(channel.isActive)
        advance(2)
        #expect(!channel.isActive)
    }

    @Test func serverNotReadingMidBody_doesNotCount_thenTheClientsSilenceDoes() throws {
        try request(Self.head)
        try request(.body(ByteBuffer(bytes: [1, 2, 3])))
        // Backpressure: no read asked for, however long.
        advance(10_000)
        #expect(channel.isActive)
        channel.read()
        advance(499)
        #expect(channel.isActive)
        try request(.body(ByteBuffer(bytes: [4])))
        channel.read()
        advance(499)
        #expect(channel.isActive)
        advance(2)
        #expect(!channel.isActive)
    }

    @Test func slowResponse_isTheServersTurn_thenTheClientHasTheWholeTimeout() throws {
        try request(Self.head)
        try request(.end(nil))
        channel.read()  // the server already asks for the next request
        advance(2200)
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        // Counted from the response's end (2200 ms), not from the read (0 ms): open at 2600 ms.
        advance(400)
        #expect(channel.isActive)
        advance(101)
        #expect(!channel.isActive)
    }
}
