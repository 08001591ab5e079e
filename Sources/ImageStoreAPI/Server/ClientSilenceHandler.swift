import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// `client_socket_timeout`: closes a connection whose client stays silent that long while the server
/// waits for it — between requests, or in the middle of a request body.
///
/// Hummingbird's own idle timer counts from the server's last read. Under backpressure (a request body's
/// consumer slower than the client: a slow share, a stalled fsync) the server stops reading, and the timer
/// then cut a client that was still sending and only waiting for the server. Like Glance's socket timeout,
/// silence here counts only while a read is asked for (an outbound `read()` has passed, nothing arrived
/// since). While a response is being produced for a request read in full, nothing counts (the server's turn).
final class ClientSilenceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let timeout: TimeAmount
    /// When the server asked for data that has not come yet; nil while it is not waiting for the client.
    private var waitingSince: NIODeadline?
    private var requestBeingRead = false
    private var responsesPending = 0
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    /// From the start the server waits for the client's first request.
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startWaiting(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startWaiting(context)
        context.fireChannelActive()
    }

    func read(context: ChannelHandlerContext) {
        startWaiting(context)
        context.read()
    }

    private func startWaiting(_ context: ChannelHandlerContext) {
        if waitingSince == nil {
            waitingSince = context.eventLoop.now
            schedule(context, at: context.eventLoop.now + timeout)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        waitingSince = nil
        switch unwrapInboundIn(data) {
        case .head:
            requestBeingRead = true
            responsesPending += 1
        case .end:
            requestBeingRead = false
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            responsesPending = max(0, responsesPending - 1)
            // The client's turn starts when the response ends, not when the server asked for the next request.
            if responsesPending == 0, waitingSince != nil { waitingSince = context.eventLoop.now }
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancel()
    }

    private func schedule(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard timer == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            handler.check(context)
        }
    }

    private func check(_ context: ChannelHandlerContext) {
        guard let waitingSince, context.channel.isActive else { return }
        let serversTurn = !requestBeingRead && responsesPending > 0
        let due = waitingSince + timeout
        if !serversTurn, context.eventLoop.now >= due {
            context.close(promise: nil)
        } else {
            schedule(context, at: serversTurn ? context.eventLoop.now + timeout : due)
        }
    }

    private func cancel() {
        timer?.cancel()
        timer = nil
    }
}
