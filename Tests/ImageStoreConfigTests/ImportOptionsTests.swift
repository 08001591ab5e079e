import ImageStoreConfig
import ImageStoreCore
import Testing

/// `enabled_import_methods`, `[os_glance_staging_store]`, `[import_filtering_opts]` and
/// `worker_self_reference_url`, as Glance reads them.
@Suite struct ImportOptionsTests {
    private func parse(_ text: String) throws -> ServiceConfiguration {
        try ServiceConfiguration.parse(text: text, path: "/etc/imagestore/imagestore.conf")
    }

    @Test func defaults_everyMethod_stagingInsideTheDatadir_httpOn80And443() throws {
        let config = try parse("[glance_store]\nfilesystem_store_datadir = /srv/images/\n")
        #expect(config.enabledImportMethods == ["glance-direct", "web-download", "copy-image"])
        #expect(config.stagingStore == nil)
        #expect(config.stagingDirectory == "/srv/images/os_glance_staging_store")
        #expect(config.importFilter == ImportFilter())
        #expect(config.importFilter.allowedPorts == [80, 443])
        #expect(config.workerSelfReferenceURL == nil)
        #expect(config.warnings.isEmpty)
    }

    @Test func glanceStyleFile_bracketedLists_stagingAndTasksSections_noWarnings() throws {
        let config = try parse(
            """
            [DEFAULT]
            enabled_import_methods = [glance-direct,web-download]
            worker_self_reference_url = http://10.0.0.5:9292
            [os_glance_staging_store]
            filesystem_store_datadir = /var/lib/glance/os_glance_staging_store/
            [os_glance_tasks_store]
            filesystem_store_datadir = /var/lib/glance/os_glance_tasks_store/
            [import_filtering_opts]
            allowed_ports = [80,443,8080]
            allowed_hosts = 127.0.0.1, Mirror.example.org
            disallowed_schemes = ftp
            """)
        #expect(config.enabledImportMethods == ["glance-direct", "web-download"])
        #expect(config.workerSelfReferenceURL == "http://10.0.0.5:9292")
        #expect(config.stagingDirectory == "/var/lib/glance/os_glance_staging_store/")
        #expect(config.importFilter.allowedPorts == [80, 443, 8080])
        #expect(config.importFilter.allowedHosts == ["127.0.0.1", "mirror.example.org"])
        #expect(config.importFilter.disallowedSchemes == ["ftp"])
        #expect(config.warnings.isEmpty, "\(config.warnings)")
    }

    @Test func badValues_stopStartUp_namingTheOption() throws {
        for text in [
            "[DEFAULT]\nenabled_import_methods = glance-direct, glance-download\n",
            "[DEFAULT]\nworker_self_reference_url = not a url\n",
            "[import_filtering_opts]\nallowed_ports = 80, http\n",
        ] {
            #expect(throws: ConfigurationError.self, "\(text)") { try parse(text) }
        }
        let config = try parse("[import_filtering_opts]\nallowed_port = 80\n")
        #expect(config.warnings.contains { $0.contains("allowed_port") && $0.contains("unknown option") })
    }

    @Test func filter_asGlancesValidateImportURI() {
        var filter = ImportFilter()
        #expect(filter.allows("http://example.com/image.qcow2"))
        #expect(filter.allows("https://example.com:443/image"))
        #expect(!filter.allows("http://example.com:8080/image"))  // allowed_ports 80, 443
        #expect(!filter.allows("ftp://example.com/image"))
        #expect(!filter.allows("file:///etc/passwd"))
        #expect(!filter.allows("http:///nohost"))
        #expect(!filter.allows("not a uri"))
        #expect(!filter.allows("http://user:secret@example.com/image"))
        // Internal addresses only when allowed_hosts names them.
        for uri in ["http://127.0.0.1/x", "http://localhost/x", "http://10.1.2.3/x", "http://169.254.169.254/x", "http://[::1]/x"] {
            #expect(!filter.allows(uri), "\(uri)")
        }
        filter.allowedHosts = ["127.0.0.1"]
        filter.allowedPorts = [8080]
        #expect(filter.allows("http://127.0.0.1:8080/x"))
        #expect(!filter.allows("http://example.com/x"))  // an allow list wins over everything else
        filter = ImportFilter()
        filter.allowedPorts = []
        filter.disallowedPorts = [22]
        filter.disallowedHosts = ["evil.example.com"]
        #expect(filter.allows("http://example.com:8080/x"))
        #expect(!filter.allows("http://example.com:22/x"))
        #expect(!filter.allows("http://evil.example.com/x"))
    }
}

/// Glance's `normalize_hostname` and the lookup `permits` adds, with a fake resolver.
@Suite struct ImportFilterResolutionTests {
    @Test func normalize_asGlance() {
        #expect(ImportFilter.normalize("127.0.0.1")?.text == "127.0.0.1")
        #expect(ImportFilter.normalize("0:0:0:0:0:0:0:1")?.text == "::1")
        #expect(ImportFilter.normalize("mirror.example.org")?.isAddress == false)
        for spelling in ["2130706433", "127.1", "127.000.000.001", "256.0.0.1", "1.2.3.4.5"] {
            #expect(ImportFilter.normalize(spelling) == nil, "\(spelling)")
        }
    }

    @Test func permits_aNameMustResolve_toNoInternalAddressUnlessAllowed() async {
        var filter = ImportFilter()
        #expect(await filter.permits("http://mirror.example.org/x") { _ in ["93.184.216.34"] })
        #expect(!(await filter.permits("http://mirror.example.org/x") { _ in [] }))
        #expect(!(await filter.permits("http://mirror.example.org/x") { _ in throw ImageStoreError.badRequest("no") }))
        for address in ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "fe80::1%eth0"] {
            #expect(!(await filter.permits("http://mirror.example.org/x") { _ in ["93.184.216.34", address] }), "\(address)")
        }
        // Literal addresses need no lookup; the lists compare the name as written.
        #expect(await filter.permits("http://93.184.216.34/x") { _ in throw ImageStoreError.badRequest("not asked") })
        filter.allowedHosts = ["mirror.example.org"]
        #expect(await filter.permits("http://mirror.example.org/x") { _ in ["10.0.0.7"] })
        #expect(!(await filter.permits("http://other.example.org/x") { _ in ["93.184.216.34"] }))
    }
}
