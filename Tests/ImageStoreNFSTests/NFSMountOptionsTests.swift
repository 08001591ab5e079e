import ImageStoreTestSupport
import Testing

@testable import ImageStoreNFS

@Suite struct NFSMountOptionsTests {
    struct Good: Sendable, CustomTestStringConvertible {
        var text: String
        var version: Int
        var port: Int? = nil
        var mountPort: Int? = nil
        var timeo: Int? = nil
        var retrans: Int? = nil
        var testDescription: String { "'\(text)'" }
    }

    static let good: [Good] = [
        Good(text: "", version: 4),
        Good(text: "vers=4,port=2049,timeo=20,retrans=2", version: 4, port: 2049, timeo: 20, retrans: 2),
        Good(text: "vers=4.0", version: 4),
        Good(text: "vers=4.1", version: 4),
        Good(text: "nfsvers=3,mountport=20048,port=2049", version: 3, port: 2049, mountPort: 20048),
        Good(text: " vers = 3 , timeo=600 ", version: 3, timeo: 600),
        Good(text: "VERS=4,Port=12049", version: 4, port: 12049),
        Good(text: "vers=3,vers=4", version: 4),  // the last one wins, as in mount(8)
        Good(text: "port=0", version: 4),  // 0 = the default port
        Good(text: "hard,proto=tcp,soft,nolock,rsize=1048576,wsize=1048576,sec=sys,_netdev", version: 4),
    ]

    @Test(arguments: good)
    func parse_whenValid_setsFields(_ good: Good) throws {
        let options = try NFSMountOptions(parsing: good.text)
        #expect(options.version == good.version)
        #expect(options.port == good.port)
        #expect(options.mountPort == good.mountPort)
        #expect(options.timeo == good.timeo)
        #expect(options.retrans == good.retrans)
        #expect(options.warnings == [])
    }

    @Test func parse_whenUnknownOptions_warnsAndKeepsTheRest() throws {
        let options = try NFSMountOptions(parsing: "vers=4,frobnicate,colour=blue,port=3049")
        #expect(options.port == 3049)
        #expect(options.warnings.count == 2)
        #expect(options.warnings[0].contains("frobnicate"))
        #expect(options.warnings[1].contains("colour=blue"))
    }

    @Test(arguments: [
        ("vers=5", "vers"), ("nfsvers=2", "nfsvers"), ("vers=", "vers"), ("vers", "vers"),
        ("port=abc", "port"), ("port=70000", "port"), ("port=-1", "port"), ("mountport=x", "mountport"),
        ("timeo=0", "timeo"), ("timeo=1.5", "timeo"), ("retrans=many", "retrans"),
    ])
    func parse_whenValueIsBad_throwsNamingTheOption(_ text: String, _ option: String) {
        let error = #expect(throws: NFSMountOptions.ParseError.self) { try NFSMountOptions(parsing: text) }
        #expect(error?.option == option)
        #expect(error?.description.contains("'\(option)=") == true)
    }

    @Test func timeout_isTimeoInDeciseconds() throws {
        #expect(try NFSMountOptions(parsing: "timeo=25").timeout == .milliseconds(2500))
        #expect(try NFSMountOptions(parsing: "vers=4").timeout == nil)
    }

    @Test func url_carriesVersionAndPorts() throws {
        let v4 = NFSServerTarget(host: "127.0.0.1", sharePath: "/images", options: try .init(parsing: "port=12049"))
        #expect(v4.url == "nfs://127.0.0.1/images?version=4&nfsport=12049")

        let v3 = NFSServerTarget(
            host: "nas", sharePath: "srv/images", options: try .init(parsing: "vers=3,port=2049,mountport=20048"))
        #expect(v3.url == "nfs://nas/srv/images?version=3&nfsport=2049&mountport=20048")

        // mountport means nothing to NFSv4 and stays out of its URL.
        let v4WithMountPort = NFSServerTarget(host: "nas", sharePath: "/x", options: try .init(parsing: "mountport=1"))
        #expect(v4WithMountPort.url == "nfs://nas/x?version=4")

        #expect(NFSServerTarget(host: "::1", sharePath: "/x").url == "nfs://[::1]/x?version=4")
    }
}

@Suite struct FakeNFSProbeTests {
    @Test func probe_answersQueuedResultsThenTheCurrentOne() async {
        let fake = FakeNFSProbe(result: .healthy(freeBytes: 10, totalBytes: 20))
        fake.enqueue(.failed(.markerMissing), .failed(.timedOut(.milliseconds(5))))

        let first = await fake.probe(markerFile: ".marker", deadline: .milliseconds(1))
        #expect(first.failure == .markerMissing)
        #expect(first.reachable)
        #expect(first.markerPresent == false)
        let second = await fake.probe(markerFile: ".marker", deadline: .milliseconds(1))
        #expect(second.failure == .timedOut(.milliseconds(5)))
        #expect(!second.reachable)
        let third = await fake.probe(markerFile: ".other", deadline: .milliseconds(2))
        #expect(third.isHealthy)
        #expect(third.freeBytes == 10)

        fake.setResult(.failed(.unreachable("gone")))
        #expect(await fake.probe(markerFile: "", deadline: .seconds(1)).failure == .unreachable("gone"))
        #expect(fake.callCount == 4)
        #expect(fake.lastMarkerFile == "")
        #expect(fake.lastDeadline == .seconds(1))
    }

    @Test func summary_namesTheFailure() {
        #expect(NFSProbeResult.failed(.mountFailed("NFS4ERR_NOENT")).summary.contains("NFS4ERR_NOENT"))
        #expect(NFSProbeResult.healthy(freeBytes: 1, totalBytes: 2).summary.contains("1 of 2 bytes free"))
    }
}
