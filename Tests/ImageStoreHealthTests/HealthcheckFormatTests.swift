import Foundation
import ImageStoreConfig
import ImageStoreCore
import ImageStoreHealth
import Testing

/// Bodies compared with what oslo.middleware 8.2.0's templates render (jinja2 3.1 / Python json).
@Suite struct HealthcheckFormatTests {
    private func report(_ results: [(String, HealthResult)]) -> HealthReport {
        HealthReport(entries: results.map { .init(backend: $0.0, result: $0.1) })
    }

    private let okAndMissing: [(String, HealthResult)] = [
        ("disable_by_files_ports", HealthResult(available: true, reason: "OK")),
        ("enable_by_files", HealthResult(available: false, reason: "FILE PATH MISSING", details: "File path /x<y> is missing")),
    ]

    @Test(
        arguments: [
            (nil, HealthcheckFormat.plain), ("*/*", .plain), ("text/plain", .plain), ("application/json", .json),
            ("text/html", .html), ("image/png", .plain), ("text/*", .plain), ("text/html, application/json", .html),
            ("application/json, text/html;q=0.9", .json), ("text/plain;q=0, */*;q=0.5", .html),
            ("application/*;q=0.2, text/html;q=0.1", .json), ("garbage", .plain), ("text/plain;q=0", .plain),
        ] as [(String?, HealthcheckFormat)])
    func negotiate_matchesWebobAcceptableOffers(accept: String?, expected: HealthcheckFormat) {
        #expect(HealthcheckFormat.negotiate(accept: accept) == expected)
    }

    @Test func plain_isOneReasonPerLine_withoutTrailingNewline() {
        let renderer = HealthcheckRenderer(detailed: false)
        #expect(renderer.body(report(okAndMissing), format: .plain) == "OK\nFILE PATH MISSING")
        #expect(renderer.body(report([]), format: .plain) == "")
    }

    @Test func json_notDetailed_isPythonsIndentedSortedDump() {
        let renderer = HealthcheckRenderer(detailed: false)
        #expect(
            renderer.body(report([okAndMissing[0]]), format: .json)
                == "{\n    \"detailed\": false,\n    \"reasons\": [\n        \"OK\"\n    ]\n}")
        #expect(renderer.body(report([]), format: .json) == "{\n    \"detailed\": false,\n    \"reasons\": []\n}")
    }

    @Test func json_detailed_addsPerCheckDetailsAndServerFacts() throws {
        let renderer = HealthcheckRenderer(detailed: true, facts: ServerFacts(version: "9.9.9"))
        let checkedAt = Date(timeIntervalSince1970: 1_764_170_528.25)
        var results = okAndMissing
        results[1].1.checkedAt = checkedAt
        let body = renderer.body(report(results), format: .json, now: Date(timeIntervalSince1970: 1_764_170_530))
        let expectedReason = [
            "        {", "            \"backend\": \"enable_by_files\",",
            "            \"checked_at\": \"2025-11-26 15:22:08.250000\",", "            \"class\": \"HealthcheckResult\",",
            "            \"details\": \"File path /x<y> is missing\",", "            \"reason\": \"FILE PATH MISSING\"",
            "        }\n    ],",
        ].joined(separator: "\n")
        #expect(body.contains(expectedReason), "\(body)")
        #expect(body.hasPrefix("{\n    \"detailed\": true,\n    \"now\": \"2025-11-26 15:22:10\",\n    \"platform\": \"Linux-"))
        #expect(body.contains("\"details\": \"\",\n"))  // oslo: `details or ''`
        #expect(body.hasSuffix("    \"version\": \"9.9.9\"\n}"))
        let parsed = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        #expect(parsed?["uptime_seconds"] as? Int == 0)
    }

    @Test func html_notDetailed_isOslosTemplateOutput() {
        let expected =
            "<HTML>\n<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>\n<BODY>\n\n<H2>Result of 2 checks:</H2>\n"
            + "<TABLE bgcolor=\"#ffffff\" border=\"1\">\n<TBODY>\n<TR>\n\n<TH>\nReason\n</TH>\n</TR>\n<TR>\n\n"
            + "    <TD>OK</TD>\n\n</TR><TR>\n\n    <TD>FILE PATH MISSING</TD>\n\n</TR>\n</TBODY>\n</TABLE>\n<HR></HR>\n\n"
            + "</BODY>\n</HTML>"
        #expect(HealthcheckRenderer(detailed: false).body(report(okAndMissing), format: .html) == expected)
        let empty =
            "<HTML>\n<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>\n<BODY>\n\n<H2>Result of 0 checks:</H2>\n"
            + "<TABLE bgcolor=\"#ffffff\" border=\"1\">\n<TBODY>\n<TR>\n\n<TH>\nReason\n</TH>\n</TR>\n\n</TBODY>\n"
            + "</TABLE>\n<HR></HR>\n\n</BODY>\n</HTML>"
        #expect(HealthcheckRenderer(detailed: false).body(report([]), format: .html) == empty)
    }

    @Test func html_detailed_hasOslosTableWithEscapedDetails() {
        let body = HealthcheckRenderer(detailed: true, facts: ServerFacts(version: "9.9.9")).body(
            report(okAndMissing), format: .html)
        #expect(body.hasPrefix("<HTML>\n<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>\n<BODY>\n<H1>Server status</H1>\n"))
        #expect(body.contains("<B>Version:</B><PRE>9.9.9</PRE>\n"))
        #expect(
            body.contains(
                "<TR>\n<TH>\nKind\n</TH>\n<TH>\nReason\n</TH>\n<TH>\nDetails\n</TH>\n\n</TR>\n<TR>\n<TD>HealthcheckResult</TD>\n"
                    + "    <TD>OK</TD>\n<TD></TD>\n</TR><TR>\n<TD>HealthcheckResult</TD>\n    <TD>FILE PATH MISSING</TD>\n"
                    + "<TD>File path /x&lt;y&gt; is missing</TD>\n</TR>\n</TBODY>"))
    }

    @Test func pythonJSON_escapesLikeEnsureAscii() {
        let value = PythonJSON.object(["b": .array([.string("é\"\\\n\u{1}😀"), .bool(true), .int(-3), .null]), "a": .object([:])])
        #expect(
            value.dumps()
                == "{\n    \"a\": {},\n    \"b\": [\n        \"\\u00e9\\\"\\\\\\n\\u0001\\ud83d\\ude00\",\n        true,\n        -3,\n        null\n    ]\n}"
        )
    }

    /// Python's short escapes for backspace and form feed, and DEL escaped (not printable ASCII): what
    /// `json.dumps(["\b\f\x7f\x1f"])` prints. The API's JSON (`ensureASCII` off) keeps RFC 8259's forms.
    @Test func pythonJSON_controlCharacters_asPython() {
        #expect(PythonJSON.array(["\u{08}\u{0C}\u{7F}\u{1F}"]).dumps() == "[\n    \"\\b\\f\\u007f\\u001f\"\n]")
        #expect(JSONString.quoted("\u{08}\u{0C}\u{7F}é") == "\"\\u0008\\u000c\u{7F}é\"")
    }

    @Test(arguments: [
        ("127.0.0.1/32", "127.0.0.1", true), ("127.0.0.1/32", "127.0.0.2", false), ("10.0.0.0/8", "10.200.3.4", true),
        ("10.0.0.0/8", "127.0.0.1", false), ("10.0.0.0/8", "::ffff:10.1.2.3", true), ("::1/128", "::1", true),
        ("::1", "127.0.0.1", false), ("fd00::/8", "fd12::5", true), ("fd00::/8", "fe80::1", false),
        ("192.168.1.0/25", "192.168.1.127", true), ("192.168.1.0/25", "192.168.1.128", false), ("0.0.0.0/0", "8.8.8.8", true),
    ])
    func ipNetwork_contains(network: String, address: String, expected: Bool) throws {
        let net = try #require(IPNetwork(network))
        #expect(net.contains(address: address) == expected)
    }
}
