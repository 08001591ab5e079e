import Foundation
import Logging
import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` with an interim `100 Continue`, which Hummingbird does not do:
/// without it curl waits a second before sending an upload body, and some clients never send it.
final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data),
            head.headerFields[.expect]?.lowercased() == "100-continue"
        {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }
}

/// Lets a connection read up to 256 KiB from its socket at once (NIO's default grows only to 64 KiB).
///
/// An upload's body arrives in as many parts as there are reads, and each part crosses the whole
/// pipeline (HTTP decoding, the async stream, the store's writer): 4× fewer, larger parts cost less CPU
/// per GiB. The adaptive allocator only grows while reads fill the buffer, so small requests keep small
/// buffers. Not larger: NIO's inbound stream holds up to 10 parts per connection, and a batch in the
/// upload pipeline keeps the reads it is made of, so the read size multiplies into the memory of every
/// concurrent upload.
final class ReceiveBufferSizing: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    static let maximumRead = 256 << 10

    func handlerAdded(context: ChannelHandlerContext) {
        let allocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: Self.maximumRead)
        context.channel.setOption(ChannelOptions.recvAllocator, value: allocator).whenFailure { _ in }
    }
}
