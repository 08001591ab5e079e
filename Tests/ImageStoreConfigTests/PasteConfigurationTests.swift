import ImageStoreConfig
import Testing

/// `[paste_deploy] config_file`: the paste file's `[app:healthcheck]` overrides `[healthcheck]`.
@Suite struct PasteConfigurationTests {
    @Test func load_whenPasteHasHealthcheckApp_itsKeysOverrideTheHealthcheckSection() throws {
        try withTemporaryDirectory { dir in
            let paste = try writeFile(
                dir, "glance-api-paste.ini",
                """
                [composite:rootapp]
                paste.composite_factory = glance.api:root_app_factory
                /: apiversions
                /healthcheck: healthcheck

                [app:healthcheck]
                paste.app_factory = oslo_middleware:Healthcheck.app_factory
                backends = enable_by_files
                enable_by_file_paths = /var/lib/glance/images/.glance
                """)
            let conf = try writeFile(
                dir, "imagestore.conf",
                """
                [paste_deploy]
                config_file = \(paste)
                [healthcheck]
                backends = disable_by_file
                disable_by_file_path = /etc/glance/healthcheck_disable
                detailed = true
                """)
            let config = try ServiceConfiguration.load(path: conf)
            #expect(config.pasteConfigFile == paste)
            // From the paste file (disable_by_file alone in [healthcheck] must not trip the conflict check).
            #expect(config.healthcheck.backends == ["enable_by_files"])
            #expect(config.healthcheck.enableByFilePaths == ["/var/lib/glance/images/.glance"])
            // Not in the paste section: still from [healthcheck].
            #expect(config.healthcheck.detailed)
            #expect(config.healthcheck.disableByFilePath == "/etc/glance/healthcheck_disable")
            #expect(config.warnings == [])
        }
    }

    @Test func load_whenPasteHasNoHealthcheckApp_usesTheHealthcheckSection() throws {
        try withTemporaryDirectory { dir in
            let paste = try writeFile(dir, "paste.ini", "[pipeline:glance-api]\npipeline = rootapp\n")
            let conf = try writeFile(
                dir, "imagestore.conf", "[paste_deploy]\nconfig_file = \(paste)\n[healthcheck]\nbackends = store\n")
            let config = try ServiceConfiguration.load(path: conf)
            #expect(config.healthcheck.backends == ["store"])
        }
    }

    @Test func load_whenPasteValueBad_throwsNamingThePasteFile() throws {
        try withTemporaryDirectory { dir in
            let paste = try writeFile(
                dir, "paste.ini", "[app:healthcheck]\nuse = egg:oslo.middleware:healthcheck\ndetailed = sometimes\n")
            let conf = try writeFile(dir, "imagestore.conf", "[paste_deploy]\nconfig_file = \(paste)\n")
            let error = try #require(throws: ConfigurationError.self) { try ServiceConfiguration.load(path: conf) }
            #expect(error.description.hasPrefix("\(paste):3: [app:healthcheck] detailed: \"sometimes\" is not a boolean"))
        }
    }

    @Test func load_whenPasteMakesBackendsConflict_throwsOslosMessage() throws {
        try withTemporaryDirectory { dir in
            let paste = try writeFile(dir, "paste.ini", "[app:healthcheck]\nbackends = disable_by_file,enable_by_files\n")
            let conf = try writeFile(dir, "imagestore.conf", "[paste_deploy]\nconfig_file = \(paste)\n")
            let error = try #require(throws: ConfigurationError.self) { try ServiceConfiguration.load(path: conf) }
            #expect(
                error.description
                    == "\(paste):2: [app:healthcheck] backends: `enable_by_files` plugin and `disable_by_file` plugin should not be enabled at the same time."
            )
        }
    }

    @Test func load_whenPasteHasUnknownKey_warnsNamingThePasteFile() throws {
        try withTemporaryDirectory { dir in
            let paste = try writeFile(dir, "paste.ini", "[app:healthcheck]\nbackend = nfs\n")
            let conf = try writeFile(dir, "imagestore.conf", "[paste_deploy]\nconfig_file = \(paste)\n")
            let config = try ServiceConfiguration.load(path: conf)
            #expect(config.warnings == ["\(paste):2: [app:healthcheck] backend: unknown option, ignored"])
            #expect(config.healthcheck.backends == [])
        }
    }

    @Test func load_whenPasteFileMissing_throwsNamingTheOption() throws {
        try withTemporaryDirectory { dir in
            let conf = try writeFile(dir, "imagestore.conf", "[paste_deploy]\nflavor = noauth\nconfig_file = \(dir)/nope.ini\n")
            let error = try #require(throws: ConfigurationError.self) { try ServiceConfiguration.load(path: conf) }
            #expect(
                error.description == "\(conf):3: [paste_deploy] config_file: paste file \"\(dir)/nope.ini\": file not found")
        }
    }
}
