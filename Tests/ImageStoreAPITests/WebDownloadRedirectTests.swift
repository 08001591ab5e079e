import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import NIOCore
import Testing

/// web-download follows redirects only to URIs that pass `[import_filtering_opts]` again (Glance's
/// `SafeRedirectHandler`), against a loopback HTTP server: a redirect to a disallowed port, host or
/// scheme, or a redirect loop, fails the import cleanly (image `queued`, the store named failed, nothing
/// in the store or staging, task `failure` saying why); a redirect to an allowed URI is followed.
@Suite struct WebDownloadRedirectTests {
    static func web(_ uri: String) -> String { #"{"method": {"name": "web-download", "uri": "\#(uri)"}}"# }

    @Test func redirects_followedOnlyToAllowedURIs() async throws {
        let data = randomBytes(70_000)
        try await LoopbackHTTPServer.with(data) { port in
            let harness = try APITestHarness { config in
                config.importFilter.allowedHosts = ["127.0.0.1"]
                config.importFilter.allowedPorts = [port]
            }
            try await harness.run { client in
                // A relative redirect, then an absolute one, to the same allowed server: followed.
                for target in ["/image", "http://127.0.0.1:\(port)/image"] {
                    let id = try await client.createImage()
                    let to = target.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                    let accepted = try await client.importImage(id, Self.web("http://127.0.0.1:\(port)/redirect?to=\(to)"))
                    #expect(accepted.status == .accepted, "\(accepted.text)")
                    let image = try await client.waitForImport(id)
                    #expect(image["status"] == "active", "\(target)")
                    #expect(image["checksum"]?.stringValue == md5Hex(data))
                    #expect(try Data(contentsOf: URL(fileURLWithPath: harness.datadir + "/" + id)) == Data(data))
                }
                let kept = try harness.storeFiles().filter { !$0.hasPrefix("os_glance") }

                // Disallowed port, hosts (not in allowed_hosts, one of them a name for loopback), schemes, and
                // a loop: each import fails cleanly.
                let refused = [
                    "http://127.0.0.1:\(port == 65535 ? 1 : port + 1)/image", "http://127.0.0.2:\(port)/image",
                    "http://localhost:\(port)/image", "ftp://127.0.0.1:\(port)/image", "file:///etc/passwd",
                ]
                for target in refused + ["LOOP"] {
                    let id = try await client.createImage()
                    let uri =
                        target == "LOOP"
                        ? "http://127.0.0.1:\(port)/loop"
                        : "http://127.0.0.1:\(port)/redirect?to=\(target.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)"
                    #expect(try await client.importImage(id, Self.web(uri)).status == .accepted)
                    let image = try await client.waitForImport(id)
                    #expect(image["status"] == "queued", "\(target)")
                    #expect(image["os_glance_failed_import"] == "file", "\(target)")
                    #expect(image["os_glance_importing_to_stores"] == "", "\(target)")
                    #expect(image["os_glance_import_task"] == nil, "\(target)")
                    #expect(image["checksum"] == .null, "\(target)")
                    #expect(try harness.storeFiles().filter { !$0.hasPrefix("os_glance") } == kept, "\(target)")
                    #expect(try harness.stagingFiles() == [], "\(target)")
                    let task = try await client.json("/v2/images/\(id)/tasks", method: .get).1?["tasks"]?[0]
                    #expect(task?["status"] == "failure", "\(target)")
                    let message = task?["message"]?.stringValue ?? ""
                    #expect(
                        target == "LOOP" ? message.contains("redirects") : message.contains("Redirect to disallowed URL"),
                        "\(target): \(message)")
                }
            }
        }
    }

    @Test func numericHostSpellings_refusedAtTheRequest_400() async throws {
        let harness = try APITestHarness { config in
            config.importFilter.allowedPorts = []
        }
        try await harness.run { client in
            let id = try await client.createImage()
            // Decimal, shorthand, hex and zero-padded spellings of 127.0.0.1 (Glance's normalize_hostname),
            // and a name that does not resolve.
            for uri in [
                "http://2130706433/x", "http://127.1/x", "http://0x7f.0.0.1/x", "http://127.000.000.001/x",
                "http://no-such-host.invalid/x",
            ] {
                let response = try await client.importImage(id, Self.web(uri))
                #expect(response.status == .badRequest, "\(uri): \(response.text)")
            }
            #expect(try await client.image(id)["status"] == "queued")
        }
    }
}
