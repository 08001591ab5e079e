import Foundation
import Testing

@testable import ImageStoreConfig

/// Environment variables and a secrets directory over the INI file: the file is what deployers write,
/// the layers keep passwords out of it.
@Suite struct ConfigurationLayersTests {
    static let file = """
        [DEFAULT]
        bind_port = 9292
        [database]
        connection = sqlite:////from/the/file.db
        [keystone_authtoken]
        password = from-the-file

        """

    func load(_ dir: String, environment: [String: String] = [:], secrets: String? = nil) throws -> ServiceConfiguration {
        let path = try writeFile(dir, "imagestore.conf", Self.file)
        return try ServiceConfiguration.load(path: path, layers: ConfigurationLayers(environment: environment, secretsDirectory: secrets))
    }

    /// A directory laid out as Kubernetes mounts a Secret: the files are symbolic links into `..data`,
    /// itself a link to a timestamped directory.
    static func kubernetesSecret(in dir: String, _ files: [String: String]) throws -> String {
        let volume = dir + "/secrets"
        let timestamped = volume + "/..2026_12_03_00_00_00.000000001"
        try FileManager.default.createDirectory(atPath: timestamped, withIntermediateDirectories: true)
        for (name, contents) in files { _ = try writeFile(timestamped, name, contents) }
        try FileManager.default.createSymbolicLink(atPath: volume + "/..data", withDestinationPath: "..2026_12_03_00_00_00.000000001")
        for name in files.keys { try FileManager.default.createSymbolicLink(atPath: volume + "/" + name, withDestinationPath: "..data/" + name) }
        return volume
    }

    @Test func withoutLayers_theFileAsItIs() throws {
        try withTemporaryDirectory { dir in
            let config = try load(dir)
            #expect(config.database == .sqlite(path: "/from/the/file.db"))
            #expect(config.logging.debug == false)
        }
    }

    @Test func environmentVariable_overridesTheFile_andSetsOptionsTheFileLacks() throws {
        try withTemporaryDirectory { dir in
            let config = try load(
                dir,
                environment: [
                    "IMAGESTORE__DATABASE__CONNECTION": "sqlite:////from/the/environment.db", "IMAGESTORE__DEFAULT__DEBUG": "true",
                    "DATABASE_CONNECTION": "sqlite:////not/ours.db",
                ])
            #expect(config.database == .sqlite(path: "/from/the/environment.db"))
            #expect(config.logging.debug == true)
            #expect(config.bindPort == 9292)
            // Only [section] key variables are read: no warning about the others.
            #expect(!config.warnings.contains { $0.contains("environment") })
        }
    }

    @Test func secretsFile_overridesEnvironmentAndFile_trimmed_throughKubernetesSymlinks() throws {
        try withTemporaryDirectory { dir in
            let secrets = try Self.kubernetesSecret(
                in: dir,
                [
                    "database.connection": "postgresql://glance:s3cret@db.example.org/glance\n",
                    "keystone_authtoken.password": "  from-the-secret  \n",
                ])
            let config = try load(
                dir, environment: ["IMAGESTORE__DATABASE__CONNECTION": "sqlite:////from/the/environment.db"], secrets: secrets)
            #expect(
                config.database
                    == .postgresql(PostgresURL(username: "glance", password: "s3cret", host: "db.example.org", database: "glance")))
            #expect(config.file?.value(section: "keystone_authtoken", key: "password") == "from-the-secret")
        }
    }

    @Test func badValueFromALayer_namesTheVariableOrTheFile() throws {
        try withTemporaryDirectory { dir in
            let fromEnvironment = #expect(throws: ConfigurationError.self) {
                try load(dir, environment: ["IMAGESTORE__DEFAULT__BIND_PORT": "abc"])
            }
            #expect(
                fromEnvironment?.description
                    == "environment variable IMAGESTORE__DEFAULT__BIND_PORT: [DEFAULT] bind_port: \"abc\" is not an integer between 1 and 65535")
            let secrets = try Self.kubernetesSecret(in: dir, ["DEFAULT.bind_port": "abc"])
            let fromSecret = #expect(throws: ConfigurationError.self) { try load(dir, secrets: secrets) }
            #expect(fromSecret?.description.hasPrefix("secrets file \(secrets)/DEFAULT.bind_port: [DEFAULT] bind_port:") == true)
        }
    }

    @Test func enabledBackendsFromTheEnvironment_storeSectionFromTheEnvironmentToo() throws {
        try withTemporaryDirectory { dir in
            let config = try load(
                dir,
                environment: [
                    "IMAGESTORE__DEFAULT__ENABLED_BACKENDS": "fast:file", "IMAGESTORE__GLANCE_STORE__DEFAULT_BACKEND": "fast",
                    "IMAGESTORE__FAST__FILESYSTEM_STORE_DATADIR": "/srv/fast",
                ])
            #expect(config.defaultBackend == "fast")
            #expect(config.store.datadir == "/srv/fast")
        }
    }

    @Test func missingSecretsDirectory_stopsStartUp() throws {
        try withTemporaryDirectory { dir in
            #expect(throws: ConfigurationError.self) { try load(dir, secrets: dir + "/nope") }
        }
    }

    @Test func embeddedDefault_withoutLayers_isTheEmbeddedDefault() throws {
        let layered = try ServiceConfiguration.embeddedDefault(baseDirectory: "/srv/try", layers: ConfigurationLayers())
        let plain = ServiceConfiguration.embeddedDefault(baseDirectory: "/srv/try")
        #expect(layered.sourcePath == nil)
        #expect(layered.isGuarded == false, "a plain local directory: no share to guard")
        #expect(layered.bindHost == plain.bindHost && layered.bindPort == plain.bindPort)
        #expect(layered.store.datadir == "/srv/try/images" && layered.store.datadir == plain.store.datadir)
        #expect(layered.database == .sqlite(path: "/srv/try/imagestore.db") && layered.database == plain.database)
        #expect(layered.pasteFlavor == plain.pasteFlavor && layered.imageSizeCap == plain.imageSizeCap)
        #expect(layered.enabledBackends == plain.enabledBackends && layered.defaultBackend == plain.defaultBackend)
    }

    @Test func embeddedDefault_environmentAndSecretsApplyWithoutAFile() throws {
        try withTemporaryDirectory { dir in
            let secrets = try Self.kubernetesSecret(in: dir, ["database.connection": "postgresql://glance:s3cret@db/glance\n"])
            let config = try ServiceConfiguration.embeddedDefault(
                baseDirectory: dir,
                layers: ConfigurationLayers(environment: ["IMAGESTORE__DEFAULT__BIND_PORT": "9393"], secretsDirectory: secrets))
            #expect(config.bindPort == 9393)
            #expect(config.database == .postgresql(PostgresURL(username: "glance", password: "s3cret", host: "db", database: "glance")))
            #expect(config.store.datadir == dir + "/images")
            #expect(config.sourcePath == nil && config.isGuarded == false)
            let bad = #expect(throws: ConfigurationError.self) {
                try ServiceConfiguration.embeddedDefault(
                    baseDirectory: dir, layers: ConfigurationLayers(environment: ["IMAGESTORE__DEFAULT__BIND_PORT": "abc"]))
            }
            #expect(bad?.description.hasPrefix("environment variable IMAGESTORE__DEFAULT__BIND_PORT:") == true)
            // A layer that sets NFS options guards the store, as the same option in a file would.
            let nfs = try ServiceConfiguration.embeddedDefault(
                baseDirectory: dir, layers: ConfigurationLayers(environment: ["IMAGESTORE__GLANCE_STORE__FILESYSTEM_STORE_REQUIRE_MOUNTPOINT": "true"]))
            #expect(nfs.store.requireMountpoint && nfs.isGuarded)
        }
    }
}
