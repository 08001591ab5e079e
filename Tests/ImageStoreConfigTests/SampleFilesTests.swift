import Foundation
import Testing

@testable import ImageStoreConfig

/// The shipped samples must stay valid and complete as options are added.
@Suite struct SampleFilesTests {
    static let etc = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("etc").path
    static let confSample = etc + "/imagestore.conf.sample"
    static let pasteSample = etc + "/glance-api-paste.ini.sample"

    @Test func confSample_loadsAsTheMinimalExampleWithoutWarnings() throws {
        let config = try ServiceConfiguration.load(path: Self.confSample)
        #expect(config.enabledBackends == [StoreBackend(id: "default_backend", type: "file")])
        #expect(config.defaultBackend == "default_backend")
        #expect(config.store.datadir == "/var/lib/imagestore/images")
        #expect(config.warnings == [])
    }

    @Test func confSample_documentsEveryOption() throws {
        let text = try String(contentsOfFile: Self.confSample, encoding: .utf8)
        let lines = Set(text.split(separator: "\n").map(String.init))
        let options =
            ConfigurationReader.Key.defaults.union(ConfigurationReader.Key.glanceStore.subtracting(["stores"]))
            .union(FilesystemStoreOptions.Key.all).union(HealthcheckOptions.Key.all.subtracting(["path"]))
            .union([
                ConfigurationReader.Key.connection, ConfigurationReader.Key.flavor, ConfigurationReader.Key.configFile,
            ])
            .union(ConfigurationReader.Key.imageFormat)
            .union([DatabaseOptions.Key.maxPoolSize, DatabaseOptions.Key.poolTimeout])
            .union(KeystoneAuthOptions.Key.all.subtracting(["auth_uri"])).union(PolicyOptions.Key.all)
            .union(MetricsOptions.Key.all)
        let undocumented = options.filter { key in
            !lines.contains { $0.hasPrefix("#\(key) =") || $0.hasPrefix("\(key) =") }
        }
        #expect(undocumented.sorted() == [])
    }

    @Test func pasteSample_overridesTheHealthcheckBackends() throws {
        try withTemporaryDirectory { dir in
            let conf = try writeFile(dir, "imagestore.conf", "[paste_deploy]\nconfig_file = \(Self.pasteSample)\n")
            let config = try ServiceConfiguration.load(path: conf)
            #expect(config.healthcheck.backends == ["enable_by_files"])
            #expect(config.healthcheck.enableByFilePaths == ["/var/lib/glance/images/.glance"])
            #expect(config.warnings == [])
        }
    }
}
