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
                #expect(Array(download.body.readableBytesView) == data)
            }
            for (first, last) in [
                (0, 0), ((1 << 20) - 1, 1 << 20), (5, (2 << 20) + 7), ((1 << 20) - 1, data.count - 1), (data.count - 1, data.count - 1),
            ] {
                let response = try await client.execute(
                    uri: "/v2/images/\(id)/file", method: .get, headers: [.range: "bytes=\(first)-\(last)"])
                #expect(response.status == .partialContent)
                #expect(response.headers[.contentRange] == "bytes \(first)-\(last)/\(data.count)")
                #expect(Array(response.body.readableBytesView) == Array(data[first...last]))
            }
            // A JSON request after the downloads: nothing of theirs is left in the connection.
            #expect(try await client.image(id)["status"] == "active")
            #expect(SendfileSocket.sends.load(ordering: .relaxed) - before >= 4, "the downloads did not use sendfile")
        }
    }

    @Test func descriptorNumber_isReadFromNIOsDescription() {
        #expect(SendfileSocket.descriptorNumber(in: "SocketChannel { BaseSocket { fd=17 }, active = true }") == 17)
        #expect(SendfileSocket.descriptorNumber(in: "EmbeddedChannel") == nil)
    }
}
