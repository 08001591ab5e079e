import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreConfig
import ImageStoreTestSupport
import Testing

/// etc/kubernetes/imagestore.yaml must agree with the server: its config parses, probes hit routes
/// the server answers on the port it listens on, and the NFS volume is the store directory.
@Suite struct KubernetesManifestTests {
    static let manifestPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../etc/kubernetes/imagestore.yaml").standardized.path

    /// The manifest's documents, as JSON objects (PyYAML does the YAML).
    static func documents() async throws -> [[String: Any]] {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let out = dir.appending("manifest.json")
        let python = try ManagedProcess(
            "python3",
            arguments: ["-c", "import json,sys,yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)", manifestPath],
            stdoutPath: out, stderrPath: dir.appending("stderr"))
        guard await python.waitForExit(timeout: .seconds(30)) == 0 else {
            throw TestSupportError("python3 + PyYAML could not read \(manifestPath): \((try? String(contentsOfFile: dir.appending("stderr"), encoding: .utf8)) ?? "")")
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))
        return try #require(json as? [[String: Any]])
    }

    static func document(_ documents: [[String: Any]], kind: String) throws -> [String: Any] {
        try #require(documents.first { $0["kind"] as? String == kind }, "no \(kind) in the manifest")
    }

    @Test func manifest_probesAndPortsMatchTheServer() async throws {
        let documents = try await Self.documents()
        let configMap = try Self.document(documents, kind: "ConfigMap")
        let configText = try #require((configMap["data"] as? [String: String])?["imagestore.conf"])
        let configuration = try ServiceConfiguration.parse(text: configText, path: "imagestore.conf (ConfigMap)")

        let deployment = try Self.document(documents, kind: "Deployment")
        let podSpec = try #require(((deployment["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        let container = try #require((podSpec["containers"] as? [[String: Any]])?.first)
        let containerPort = try #require((container["ports"] as? [[String: Any]])?.first?["containerPort"] as? Int)
        #expect(containerPort == configuration.bindPort)

        var probes: [String: (path: String, port: Int)] = [:]
        for name in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let http = try #require((container[name] as? [String: Any])?["httpGet"] as? [String: Any], "\(name) has no httpGet")
            probes[name] = (try #require(http["path"] as? String), try #require(http["port"] as? Int))
            #expect(probes[name]?.port == configuration.bindPort, "\(name) port")
        }
        // Start-up and liveness must not depend on the share; readiness is the healthcheck verdict.
        #expect(probes["startupProbe"]?.path == "/livez")
        #expect(probes["livenessProbe"]?.path == "/livez")
        #expect(["/readyz", "/healthcheck"].contains(probes["readinessProbe"]?.path ?? ""))

        let service = try Self.document(documents, kind: "Service")
        let servicePort = try #require(((service["spec"] as? [String: Any])?["ports"] as? [[String: Any]])?.first)
        #expect(servicePort["targetPort"] as? Int == configuration.bindPort)

        // The NFS volume is mounted at the store directory, and the healthcheck marker is on it.
        let nfsVolume = try #require((podSpec["volumes"] as? [[String: Any]])?.first { $0["nfs"] != nil })
        let mount = try #require(
            (container["volumeMounts"] as? [[String: Any]])?.first { $0["name"] as? String == nfsVolume["name"] as? String })
        #expect(mount["mountPath"] as? String == configuration.store.datadir)
        let nfs = try #require(nfsVolume["nfs"] as? [String: Any])
        #expect(nfs["server"] as? String == configuration.store.nfsHost)
        #expect(nfs["path"] as? String == configuration.store.nfsSharePath)
        #expect(configuration.healthcheck.enableByFilePaths.allSatisfy { $0.hasPrefix(configuration.store.datadir + "/") })

        // Every probe path is a route the real server answers (no 404/405), /livez with 200.
        let paths = Set(probes.values.map(\.path))
        try await HealthTestHarness().run { client in
            for path in paths {
                let response = try await client.get(path)
                #expect(response.status == .ok, "\(path) answered \(response.status)")
            }
        }
    }
}
