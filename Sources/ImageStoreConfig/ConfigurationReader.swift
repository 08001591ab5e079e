import Foundation
import ImageStoreCore

/// Turns a parsed `INIFile` into a validated `ServiceConfiguration`: reads every option we know with
/// its type and range, applies the paste file's `[app:healthcheck]` overrides, and collects warnings
/// for whatever it does not know.
struct ConfigurationReader {
    let file: INIFile
    private var warnings: [String] = []

    init(file: INIFile) { self.file = file }

    // MARK: Names

    enum Section {
        static let defaults = INIFile.defaultSection
        static let glanceStore = "glance_store"
        static let database = "database"
        static let pasteDeploy = "paste_deploy"
        static let healthcheck = "healthcheck"
        static let keystoneAuthtoken = "keystone_authtoken"
        static let osloPolicy = "oslo_policy"
        static let metrics = "metrics"
        static let imageFormat = "image_format"
        static let importFiltering = "import_filtering_opts"
        static let stagingStore = "os_glance_staging_store"
        /// Glance registers these stores itself (staging and tasks areas); their sections are valid.
        static let reservedStores: Set<String> = ["os_glance_staging_store", "os_glance_tasks_store"]
        /// The paste file's section whose keys override `[healthcheck]`.
        static let pasteHealthcheck = "app:healthcheck"
        static let ours: Set<String> = [
            defaults, glanceStore, database, pasteDeploy, healthcheck, keystoneAuthtoken, osloPolicy, metrics,
            imageFormat, importFiltering,
        ]
    }

    enum Key {
        static let bindHost = "bind_host"
        static let bindPort = "bind_port"
        static let imageSizeCap = "image_size_cap"
        static let userStorageQuota = "user_storage_quota"
        static let enabledBackends = "enabled_backends"
        static let drainTimeout = "shutdown_drain_timeout"
        static let clientSocketTimeout = "client_socket_timeout"
        /// ImageStore's own (Glance has no replica leases).
        static let replicaLeaseTime = "replica_lease_time"
        static let requireImageFormatMatch = "require_image_format_match"
        static let gptSafetyChecksNonfatal = "gpt_safety_checks_nonfatal"
        static let diskFormats = "disk_formats"
        static let containerFormats = "container_formats"
        static let imageFormat: Set<String> = [requireImageFormatMatch, gptSafetyChecksNonfatal, diskFormats, containerFormats]
        static let storeUnavailableStatus = "store_unavailable_status"
        static let hashingAlgorithm = "hashing_algorithm"
        static let defaultBackend = "default_backend"
        static let enabledImportMethods = "enabled_import_methods"
        static let workerSelfReferenceURL = "worker_self_reference_url"
        static let showImageDirectURL = "show_image_direct_url"
        static let showMultipleLocations = "show_multiple_locations"
        static let importFiltering: Set<String> = [
            "allowed_schemes", "disallowed_schemes", "allowed_hosts", "disallowed_hosts", "allowed_ports", "disallowed_ports",
        ]
        /// Deprecated legacy glance_store options: accepted, `default_store` must be `file`.
        static let stores = "stores"
        static let defaultStore = "default_store"
        static let connection = "connection"
        static let flavor = "flavor"
        static let configFile = "config_file"
        /// paste-deploy's own keys in an app section; they select the Python factory and mean nothing here.
        static let pasteFactoryKeys: Set<String> = ["paste.app_factory", "use"]

        static let defaults: Set<String> = Set(
            [
                bindHost, bindPort, imageSizeCap, userStorageQuota, enabledBackends, drainTimeout, clientSocketTimeout,
                replicaLeaseTime, storeUnavailableStatus, enabledImportMethods, workerSelfReferenceURL, hashingAlgorithm,
                showImageDirectURL, showMultipleLocations,
            ]
        ).union(ImageLimits.Key.all).union(LoggingOptions.Key.all)
        static let glanceStore: Set<String> = [defaultBackend, stores, defaultStore]
    }

    // MARK: Reading

    mutating func read() throws -> ServiceConfiguration {
        var config = ServiceConfiguration(sourcePath: file.path, file: file)
        try readDefaults(into: &config)
        let storeSection = try readBackends(into: &config)
        config.store = try readStore(section: storeSection)
        // Every enabled store has its own section, read with the same rules (its own guard options).
        config.storeOptions = [config.defaultBackend: config.store]
        for backend in config.enabledBackends where backend.id != config.defaultBackend {
            config.storeOptions[backend.id] = try readStore(section: backend.id)
        }
        if let (first, second) = config.storesSharingADirectory() {
            throw ConfigurationError(
                path: file.path, line: file.section(second)?.line, section: second, key: FilesystemStoreOptions.Key.datadir,
                reason:
                    "store \(quoted(second)) has the same filesystem_store_datadir as store \(quoted(first)): each store needs its own directory (one store's start-up reconciliation would take the other's images for leftovers)"
            )
        }
        if file.section(Section.stagingStore) != nil {
            var staging = try readStore(section: Section.stagingStore)
            if file.section(Section.stagingStore)?.entry(FilesystemStoreOptions.Key.datadir) == nil {
                staging.datadir = config.stagingDirectory
            }
            config.stagingStore = staging
        }
        config.importFilter = try readImportFilter()
        if let v = value(Section.database, Key.connection) {
            switch DatabaseLocation.parse(try v.nonEmptyString()) {
            case .success(let location): config.database = location
            case .failure(let reason): throw v.invalid(reason.description)
            }
        }
        if let v = value(Section.database, DatabaseOptions.Key.maxPoolSize) { config.databaseOptions.maxPoolSize = try v.int(in: 1...1000) }
        if let v = value(Section.database, DatabaseOptions.Key.poolTimeout) {
            config.databaseOptions.poolTimeout = try v.seconds(greaterThan: 0)
        }
        if let v = value(Section.imageFormat, Key.requireImageFormatMatch) { config.requireImageFormatMatch = try v.bool() }
        if let v = value(Section.imageFormat, Key.gptSafetyChecksNonfatal) {
            // Any name is accepted, as in Glance; only `mbr` names a check the GPT inspector has.
            config.gptSafetyChecksNonfatal = Set(Self.bracketedList(v))
        }
        // Any names, as Glance's ListOpts; an empty list leaves only null (no data can be uploaded).
        if let v = value(Section.imageFormat, Key.diskFormats) { config.imageFormats.disk = Self.bracketedList(v) }
        if let v = value(Section.imageFormat, Key.containerFormats) { config.imageFormats.container = Self.bracketedList(v) }
        try readPaste(into: &config)
        try readAuth(into: &config)
        config.policy = try readPolicy()
        config.metrics = try readMetrics()
        warnAboutUnknownNames(backendIDs: Set(config.enabledBackends.map(\.id)))
        config.warnings = warnings
        return config
    }

    private func readDefaults(into config: inout ServiceConfiguration) throws {
        let section = Section.defaults
        if let v = value(section, Key.bindHost) {
            let host = try v.nonEmptyString()
            guard !host.contains(where: \.isWhitespace) else { throw v.invalid("\(quoted(host)) is not a host name or IP address") }
            config.bindHost = host
        }
        if let v = value(section, Key.bindPort) { config.bindPort = try v.int(in: 1...65535) }
        if let v = value(section, Key.imageSizeCap) {
            config.imageSizeCap = try v.int64(in: 0...ServiceConfiguration.maxImageSizeCap)
        }
        if let v = value(section, Key.userStorageQuota) {
            guard let quota = ValueSyntax.byteSize(v.text) else {
                throw v.invalid(
                    "\(quoted(v.text)) is not a size: digits and an optional unit B, KB, MB, GB or TB without a space (e.g. 10GB); 0 turns the quota off"
                )
            }
            config.userStorageQuota = quota
        }
        if let v = value(section, Key.drainTimeout) { config.drainTimeout = try v.seconds(greaterThan: 0, orEqual: true) }
        if let v = value(section, Key.clientSocketTimeout) {
            config.clientSocketTimeout = try v.seconds(greaterThan: 0, orEqual: true)
        }
        if let v = value(section, Key.enabledImportMethods) {
            // oslo.config's ListOpt also takes Glance's bracketed form: [glance-direct,web-download].
            let methods = Self.bracketedList(v)
            for method in methods where !ImportMethod.allNames.contains(method) {
                throw v.invalid("\(quoted(method)) is not an import method ImageStore has (\(ImportMethod.allNames.joined(separator: ", ")))")
            }
            config.enabledImportMethods = methods
        }
        if let v = value(section, Key.showImageDirectURL) { config.showImageDirectURL = try v.bool() }
        if let v = value(section, Key.showMultipleLocations) { config.showMultipleLocations = try v.bool() }
        if let v = value(section, Key.workerSelfReferenceURL), let url = v.optionalString {
            guard ValueSyntax.httpBase(url) != nil else { throw v.invalid("\(quoted(url)) is not an http:// or https:// URL") }
            config.workerSelfReferenceURL = url
        }
        if let v = value(section, Key.replicaLeaseTime) {
            // Heartbeats go every third of it: below one second they would be a busy loop on the database.
            config.replicaLeaseTime = try v.seconds(greaterThan: 1, orEqual: true)
        }
        if let v = value(section, Key.hashingAlgorithm) {
            let name = try v.nonEmptyString().lowercased()
            guard let algorithm = HashAlgorithm(rawValue: name) else {
                throw v.invalid("\(quoted(name)) is not a hashing algorithm ImageStore has (\(HashAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            config.hashingAlgorithm = algorithm
        }
        // Glance's IntOpts without bounds: any negative value means unlimited.
        if let v = value(section, Key.storeUnavailableStatus) {
            guard let status = StoreUnavailableStatus(rawValue: try v.int(in: 100...599)) else {
                throw v.invalid("must be 410 (the store is gone) or 503 (retry later, with Retry-After)")
            }
            config.storeUnavailableStatus = status
        }
        if let v = value(section, LoggingOptions.Key.debug) { config.logging.debug = try v.bool() }
        if let v = value(section, LoggingOptions.Key.logFile) { config.logging.logFile = v.optionalString }
        if let v = value(section, LoggingOptions.Key.useJSON) { config.logging.useJSON = try v.bool() }
        if let v = value(section, LoggingOptions.Key.useStderr) { config.logging.useStderr = try v.bool() }
        if let v = value(section, ImageLimits.Key.properties) { config.imageLimits.properties = try v.int(in: Int.min...Int.max) }
        if let v = value(section, ImageLimits.Key.tags) { config.imageLimits.tags = try v.int(in: Int.min...Int.max) }
        if let v = value(section, ImageLimits.Key.members) { config.imageLimits.members = try v.int(in: Int.min...Int.max) }
        if let v = value(section, ImageLimits.Key.locations) { config.imageLimits.locations = try v.int(in: Int.min...Int.max) }
    }

    /// Reads `enabled_backends` and `default_backend`; returns the section holding the store's options.
    private mutating func readBackends(into config: inout ServiceConfiguration) throws -> String {
        guard let enabled = value(Section.defaults, Key.enabledBackends), !enabled.list.isEmpty else {
            // Legacy single-store mode: the store's options are in [glance_store].
            config.enabledBackends = [StoreBackend(id: StoreBackend.legacyID, type: "file")]
            config.defaultBackend = StoreBackend.legacyID
            if let entry = file.section(Section.glanceStore)?.entry(Key.defaultBackend) {
                warn(entry, "ignored: enabled_backends is not set, so the single store's options are read from [glance_store]")
            }
            if let v = value(Section.glanceStore, Key.defaultStore), v.text != "file" {
                throw v.invalid("\(quoted(v.text)) is not supported: the only store type is \"file\"")
            }
            return Section.glanceStore
        }
        config.enabledBackends = try parseBackends(enabled)
        let ids = config.enabledBackends.map(\.id)
        let idList = ids.joined(separator: ", ")
        guard let chosen = value(Section.glanceStore, Key.defaultBackend) else {
            throw ConfigurationError(
                path: file.path, line: file.section(Section.glanceStore)?.line, section: Section.glanceStore,
                key: Key.defaultBackend, reason: "must be set to one of the enabled_backends ids (\(idList))")
        }
        let id = try chosen.nonEmptyString()
        guard ids.contains(id) else {
            throw chosen.invalid("\(quoted(id)) is not one of the enabled_backends ids (\(idList))")
        }
        config.defaultBackend = id
        for entry in file.section(Section.glanceStore)?.entries ?? [] where FilesystemStoreOptions.Key.all.contains(entry.key) {
            warn(entry, "ignored: enabled_backends is set, so the store's options are read from [\(id)]")
        }
        if let entry = file.section(Section.glanceStore)?.entry(Key.defaultStore) {
            warn(entry, "ignored: deprecated legacy option, default_backend chooses the store")
        }
        return id
    }

    /// `id:type[,id:type]`, like oslo.config's DictOpt.
    private func parseBackends(_ v: OptionValue) throws -> [StoreBackend] {
        var backends: [StoreBackend] = []
        for item in v.list {
            let parts = item.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let id = parts[0].trimmingCharacters(in: .whitespaces)
            let type = parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            guard !id.isEmpty, !type.isEmpty else {
                throw v.invalid("\(quoted(item)) is not id:type (e.g. enabled_backends = default_backend:file)")
            }
            guard !id.hasPrefix(StoreBackend.reservedIDPrefix) else {
                throw v.invalid("store id \(quoted(id)) starts with \"\(StoreBackend.reservedIDPrefix)\", which Glance reserves for its own stores")
            }
            guard !Section.ours.contains(id), !Section.reservedStores.contains(id) else {
                throw v.invalid("store id \(quoted(id)) is the name of another section; choose another id")
            }
            guard !backends.contains(where: { $0.id == id }) else { throw v.invalid("store id \(quoted(id)) is given twice") }
            guard StoreBackend.supportedTypes.contains(type) else {
                throw v.invalid("store \(quoted(id)) has type \(quoted(type)): only \"file\" is supported")
            }
            backends.append(StoreBackend(id: id, type: type))
        }
        return backends
    }

    private mutating func readStore(section: String) throws -> FilesystemStoreOptions {
        typealias K = FilesystemStoreOptions.Key
        var options = FilesystemStoreOptions()
        if let v = value(section, K.datadir) { options.datadir = try v.nonEmptyString() }
        if let v = value(section, K.filePerm) { options.filePerm = try parseFilePerm(v) }
        if let v = value(section, K.chunkSize) { options.chunkSize = try v.int(in: 1...Int.max) }
        if let v = value(section, K.description) { options.description = v.optionalString }
        if let v = value(section, K.weight) { options.weight = try v.int(in: Int.min...Int.max) }
        if let v = value(section, K.markerFile) { options.markerFile = try v.nonEmptyString() }
        if let v = value(section, K.mountTypes) {
            guard !v.list.isEmpty else { throw v.invalid("must name at least one filesystem type (e.g. nfs, nfs4)") }
            options.mountTypes = v.list
        }
        if let v = value(section, K.isNFSConfigured) { options.isNFSConfigured = try v.bool() }
        if let v = value(section, K.nfsHost) { options.nfsHost = v.optionalString }
        if let v = value(section, K.nfsSharePath) {
            options.nfsSharePath = v.optionalString
            if let share = options.nfsSharePath, !share.hasPrefix("/") {
                throw v.invalid("\(quoted(share)) is not an absolute export path (e.g. /exports/glance)")
            }
        }
        if let v = value(section, K.nfsMountOptions) { options.nfsMountOptions = v.optionalString }
        if let v = value(section, K.guardInterval) { options.guardInterval = try v.seconds(greaterThan: 0) }
        let guardTimeout = try value(section, K.guardTimeout).map { try $0.milliseconds(in: 1...Int.max) }
        if let guardTimeout { options.guardTimeout = guardTimeout }
        // glance_store's own name for the same deadline (whole seconds, 0 = off). Both set: the smaller
        // wins, so neither name can lengthen what the other promised.
        if let v = value(section, K.storeTimeout) {
            let seconds = try v.int(in: 0...86_400)
            if seconds > 0 {
                if let guardTimeout {
                    options.guardTimeout = min(guardTimeout, .seconds(seconds))
                    warn(
                        v.entry,
                        "both \(K.storeTimeout) (\(seconds) s) and \(K.guardTimeout) (\(guardTimeout.wholeMilliseconds) ms) "
                            + "are set: using the smaller, \(options.guardTimeout.wholeMilliseconds) ms")
                } else {
                    options.guardTimeout = .seconds(seconds)
                }
            }
        }
        if let v = value(section, K.threadPoolSize) { options.threadPoolSize = try v.int(in: 1...256) }
        if let v = value(section, K.directIO) { options.directIO = try v.bool() }
        if let v = value(section, K.flushAfter) {
            options.flushAfterMiB = try v.int(in: 0...FilesystemStoreOptions.maximumFlushAfterMiB)
        }
        if let v = value(section, K.guardMaxAge) { options.guardMaxAge = try v.milliseconds(in: 0...Int.max) }
        if let v = value(section, K.reservedSpace) { options.reservedSpace = try parseReservedSpace(v) }

        // Missing NFS host or share is not fatal: as the Glance spec says, the store starts disabled with
        // that reason (the mount guard reports it) and the API still serves reads and metadata.
        if options.isNFSConfigured, let entry = value(section, K.isNFSConfigured)?.entry {
            for (key, present) in [(K.nfsHost, options.nfsHost != nil), (K.nfsSharePath, options.nfsSharePath != nil)] where !present {
                warn(entry, "\(key) must be set when \(K.isNFSConfigured) is true: the store stays disabled")
            }
        }
        // An NFS store must never be written through an unmounted mount point: the images would land
        // on the local disk underneath and vanish from the share, so NFS forces the check on.
        var requireMountpoint = FilesystemStoreOptions.defaultRequireMountpoint
        if let v = value(section, K.requireMountpoint) {
            requireMountpoint = try v.bool()
            if !requireMountpoint && options.isNFSConfigured {
                warn(v.entry, "overridden to true: \(K.isNFSConfigured) = true requires the mount point check")
            }
        }
        options.requireMountpoint = requireMountpoint || options.isNFSConfigured

        if let v = value(section, K.mountpoint), let mountpoint = v.optionalString {
            let mount = ValueSyntax.pathComponents(mountpoint)
            let data = ValueSyntax.pathComponents(options.datadir)
            let sameAnchor = mountpoint.hasPrefix("/") == options.datadir.hasPrefix("/")
            guard sameAnchor, data.starts(with: mount) else {
                throw v.invalid(
                    "\(quoted(mountpoint)) is neither the datadir \(quoted(options.datadir)) nor a directory above it")
            }
            options.mountpointPath = mountpoint
        }
        return options
    }

    /// A list option, with or without oslo.config's brackets.
    static func bracketedList(_ v: OptionValue) -> [String] {
        v.list.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "[] ")) }.filter { !$0.isEmpty }
    }

    /// `[import_filtering_opts]`, Glance's names and defaults.
    private func readImportFilter() throws -> ImportFilter {
        var filter = ImportFilter()
        func own(_ key: String) -> OptionValue? {
            file.section(Section.importFiltering)?.entry(key).map { OptionValue(path: file.path, entry: $0) }
        }
        func ports(_ v: OptionValue) throws -> [Int] {
            try Self.bracketedList(v).map { text in
                guard let port = Int(text), (0...65535).contains(port) else { throw v.invalid("\(quoted(text)) is not a port number") }
                return port
            }
        }
        if let v = own("allowed_schemes") { filter.allowedSchemes = Self.bracketedList(v).map { $0.lowercased() } }
        if let v = own("disallowed_schemes") { filter.disallowedSchemes = Self.bracketedList(v).map { $0.lowercased() } }
        if let v = own("allowed_hosts") { filter.allowedHosts = Self.bracketedList(v).map { $0.lowercased() } }
        if let v = own("disallowed_hosts") { filter.disallowedHosts = Self.bracketedList(v).map { $0.lowercased() } }
        if let v = own("allowed_ports") { filter.allowedPorts = try ports(v) }
        if let v = own("disallowed_ports") { filter.disallowedPorts = try ports(v) }
        return filter
    }

    /// `N%` (0 ≤ N < 100) of the filesystem, or a byte size (`1073741824`, `10GB`).
    private func parseReservedSpace(_ v: OptionValue) throws -> ReservedSpace {
        if v.text.hasSuffix("%") {
            let number = v.text.dropLast().trimmingCharacters(in: .whitespaces)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                let percent = Double(number), percent >= 0, percent < 100
            else {
                throw v.invalid("\(quoted(v.text)) is not a percentage from 0% to below 100% (e.g. 10%)")
            }
            return .percent(percent)
        }
        guard let bytes = ValueSyntax.byteSize(v.text) else {
            throw v.invalid(
                "\(quoted(v.text)) is not a size: digits and an optional unit B, KB, MB, GB or TB (e.g. 10GB), or a percentage of the filesystem (e.g. 10%)")
        }
        return .bytes(bytes)
    }

    /// Octal text as glance_store reads `filesystem_store_file_perm` (`0640` or `640`); 0 leaves the mode.
    private func parseFilePerm(_ v: OptionValue) throws -> Int {
        guard !v.text.isEmpty, v.text.allSatisfy({ ("0"..."7").contains($0) }), let mode = Int(v.text, radix: 8), mode <= 0o7777
        else {
            throw v.invalid("\(quoted(v.text)) is not an octal file mode such as 0640 (0 leaves the mode unchanged)")
        }
        if mode != 0 && mode & 0o400 == 0 {
            throw v.invalid(
                "\(quoted(v.text)) does not let the owner read (0400): the server could not read the images it writes")
        }
        return mode
    }

    // MARK: Paste file and health check

    private mutating func readPaste(into config: inout ServiceConfiguration) throws {
        if let v = value(Section.pasteDeploy, Key.flavor), let flavor = v.optionalString {
            // Glance's keystone+cachemanagement and friends add middleware ImageStore does not have.
            let base = flavor.split(separator: "+", maxSplits: 1).first.map(String.init) ?? flavor
            guard base == AuthFlavor.keystone.rawValue || flavor == AuthFlavor.noauth.rawValue else {
                throw v.invalid("\(quoted(flavor)) is not a supported flavor: use \"keystone\" or \"noauth\"")
            }
            if base == AuthFlavor.keystone.rawValue && flavor != base {
                warn(v.entry, "read as \"keystone\": the \(quoted(String(flavor.dropFirst(base.count + 1)))) part has no meaning here")
            }
            config.pasteFlavor = flavor
            config.authFlavor = base == AuthFlavor.keystone.rawValue ? .keystone : .noauth
        }
        var paste: INIFile?
        if let v = value(Section.pasteDeploy, Key.configFile), let pastePath = v.optionalString {
            do {
                // Paste files use configparser syntax, where `/v2: apiv2app` lines are common.
                paste = try INIFile.load(path: pastePath, allowColonSeparator: true)
            } catch let error as ConfigurationError where error.line == nil {
                throw v.invalid("paste file \(quoted(pastePath)): \(error.reason)")
            }
            config.pasteConfigFile = pastePath
        }
        config.healthcheck = try readHealthcheck(paste: paste)
    }

    // MARK: Keystone and policy

    /// `[keystone_authtoken]`, required with the keystone flavor and ignored (with a warning) otherwise.
    private mutating func readAuth(into config: inout ServiceConfiguration) throws {
        typealias K = KeystoneAuthOptions.Key
        let section = Section.keystoneAuthtoken
        guard config.authFlavor == .keystone else {
            if let header = file.section(section), !header.entries.isEmpty {
                warnings.append(
                    ConfigurationError.format(
                        path: file.path, line: header.line, section: section, key: nil,
                        message: "ignored: [paste_deploy] flavor is noauth"))
            }
            return
        }
        func required(_ key: String) throws -> String {
            guard let v = value(section, key) else {
                throw ConfigurationError(
                    path: file.path, line: file.section(section)?.line, section: section, key: key,
                    reason: "must be set when [paste_deploy] flavor is keystone")
            }
            return try v.nonEmptyString()
        }
        var options = KeystoneAuthOptions(authURL: try required(K.authURL), username: try required(K.username), password: try required(K.password))
        guard let url = ValueSyntax.httpBase(options.authURL) else {
            throw value(section, K.authURL)!.invalid("\(quoted(options.authURL)) is not an http:// or https:// URL")
        }
        options.authURL = url
        if let v = value(section, K.authType) {
            guard v.text == "password" else {
                throw v.invalid("\(quoted(v.text)) is not supported: the only auth_type is \"password\"")
            }
        }
        if let v = value(section, K.authURI), value(section, K.wwwAuthenticateURI) == nil {
            warn(v.entry, "deprecated: use www_authenticate_uri")
            options.wwwAuthenticateURI = v.optionalString
        }
        if let v = value(section, K.wwwAuthenticateURI) { options.wwwAuthenticateURI = v.optionalString }
        options.projectName = value(section, K.projectName)?.optionalString
        options.projectID = value(section, K.projectID)?.optionalString
        guard options.projectName != nil || options.projectID != nil else {
            throw ConfigurationError(
                path: file.path, line: file.section(section)?.line, section: section, key: K.projectName,
                reason: "project_name or project_id must be set: the service validates tokens with a project-scoped token")
        }
        options.userDomainName = value(section, K.userDomainName)?.optionalString
        options.userDomainID = value(section, K.userDomainID)?.optionalString
        options.projectDomainName = value(section, K.projectDomainName)?.optionalString
        options.projectDomainID = value(section, K.projectDomainID)?.optionalString
        options.regionName = value(section, K.regionName)?.optionalString
        if let v = value(section, K.interface) {
            // keystoneauth also accepts the URL-style names.
            let names = ["public": "public", "publicurl": "public", "internal": "internal", "internalurl": "internal", "admin": "admin", "adminurl": "admin"]
            guard let interface = names[v.text.lowercased()] else {
                throw v.invalid("\(quoted(v.text)) is not one of public, internal, admin")
            }
            options.interface = interface
        }
        if let v = value(section, K.serviceTokenRoles) { options.serviceTokenRoles = v.list.map { $0.lowercased() } }
        if let v = value(section, K.serviceTokenRolesRequired) { options.serviceTokenRolesRequired = try v.bool() }
        if let v = value(section, K.tokenCacheTime) { options.tokenCacheTime = .seconds(try v.int(in: -1...Int.max)) }
        if let v = value(section, K.tokenCacheSize) { options.tokenCacheSize = try v.int(in: 1...Int.max) }
        if let v = value(section, K.httpConnectTimeout) { options.httpConnectTimeout = try v.seconds(greaterThan: 0) }
        if let v = value(section, K.httpRequestMaxRetries) { options.httpRequestMaxRetries = try v.int(in: 0...100) }
        options.cafile = value(section, K.cafile)?.optionalString
        if let v = value(section, K.insecure) { options.insecure = try v.bool() }
        config.keystone = options
    }

    /// `[oslo_policy]`. A relative `policy_file` is looked up next to the configuration file, as
    /// oslo.policy finds it in the config directory.
    private mutating func readPolicy() throws -> PolicyOptions {
        typealias K = PolicyOptions.Key
        let section = Section.osloPolicy
        var options = PolicyOptions()
        let directory = file.path.map { path -> String in
            let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            return parts.isEmpty ? "." : (parts.joined(separator: "/").isEmpty ? "/" : parts.joined(separator: "/"))
        }
        if let v = value(section, K.policyFile), let path = v.optionalString {
            options.policyFile = path.hasPrefix("/") ? path : "\(directory ?? ".")/\(path)"
            options.policyFileIsExplicit = true
        } else if let directory {
            options.policyFile = "\(directory)/\(PolicyOptions.defaultPolicyFileName)"
        }
        if let v = value(section, K.enforceScope) { options.enforceScope = try v.bool() }
        if let v = value(section, K.enforceNewDefaults), try v.bool() == false {
            warn(v.entry, "ignored: ImageStore enforces Glance's new (secure RBAC) defaults only; override single rules in the policy file")
        }
        return options
    }

    private func readMetrics() throws -> MetricsOptions {
        typealias K = MetricsOptions.Key
        var options = MetricsOptions()
        // From [metrics] only: [DEFAULT]'s bind_host/bind_port are the API's listener.
        func own(_ key: String) -> OptionValue? {
            file.section(Section.metrics)?.entry(key).map { OptionValue(path: file.path, entry: $0) }
        }
        if let v = own(K.enabled) { options.enabled = try v.bool() }
        if let v = own(K.bindHost) { options.bindHost = v.optionalString }
        if let v = own(K.bindPort) { options.bindPort = try v.int(in: 1...65535) }
        return options
    }

    /// `[healthcheck]`, where each key of the paste file's `[app:healthcheck]` wins (oslo.middleware's
    /// `_conf_get`: the paste value is set as an override of the oslo option).
    private mutating func readHealthcheck(paste: INIFile?) throws -> HealthcheckOptions {
        typealias K = HealthcheckOptions.Key
        let pasteApp = paste?.section(Section.pasteHealthcheck)
        func lookup(_ key: String) -> OptionValue? {
            // paste-deploy hands the app its section merged over the file's [DEFAULT] (global_conf).
            if let paste, pasteApp != nil, let entry = paste.entry(section: Section.pasteHealthcheck, key: key) {
                return OptionValue(path: paste.path, entry: entry)
            }
            return value(Section.healthcheck, key)
        }
        if let paste, let pasteApp {
            for entry in pasteApp.entries where !K.all.contains(entry.key) && !Key.pasteFactoryKeys.contains(entry.key) {
                warnings.append(
                    ConfigurationError.format(
                        path: paste.path, line: entry.line, section: pasteApp.name, key: entry.key,
                        message: "unknown option, ignored"))
            }
        }

        var options = HealthcheckOptions()
        if let v = lookup(K.backends) {
            let known = HealthcheckOptions.knownBackends
            for name in v.list where !known.contains(name) {
                throw v.invalid("unknown backend \(quoted(name)); known backends: \(known.joined(separator: ", "))")
            }
            if v.list.contains("enable_by_files") && v.list.contains("disable_by_file") {
                // oslo.middleware's ConfigInvalid text, word for word.
                throw v.invalid(
                    "`enable_by_files` plugin and `disable_by_file` plugin should not be enabled at the same time.")
            }
            options.backends = v.list
        }
        if let v = lookup(K.detailed) { options.detailed = try v.bool() }
        if let v = lookup(K.allowedSourceRanges) {
            // Parsed once, here: the health endpoint uses these values, so a range can never be accepted
            // here and then dropped there (an empty list would let everyone in).
            options.allowedSourceRanges = try v.list.map { range in
                guard let network = IPNetwork(range) else {
                    throw v.invalid("\(quoted(range)) is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8 or fd00::/8)")
                }
                return network
            }
        }
        if let v = lookup(K.ignoreProxiedRequests) { options.ignoreProxiedRequests = try v.bool() }
        if let v = lookup(K.disableByFilePath) { options.disableByFilePath = v.optionalString }
        if let v = lookup(K.disableByFilePaths) {
            var byPort: [String: String] = [:]
            for item in v.list {
                // Split on the first ":" like oslo.middleware, so a path may contain colons.
                let parts = item.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                let portText = parts[0].trimmingCharacters(in: .whitespaces)
                let path = parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
                guard let port = Int(portText), (1...65535).contains(port), !path.isEmpty else {
                    throw v.invalid("\(quoted(item)) is not port:path with a port between 1 and 65535 (e.g. 9292:/etc/imagestore/disable)")
                }
                guard byPort[String(port)] == nil else { throw v.invalid("port \(port) is given twice") }
                byPort[String(port)] = path
            }
            options.disableByFilePaths = byPort
        }
        if let v = lookup(K.enableByFilePaths) { options.enableByFilePaths = v.list }
        if let v = lookup(K.interval) { options.checkInterval = try v.seconds(greaterThan: 0) }
        if let v = lookup(K.checkTimeout) { options.checkTimeout = try v.milliseconds(in: 1...Int.max) }
        if let v = lookup(K.failureThreshold) { options.failureThreshold = try v.int(in: 1...Int.max) }
        if let v = lookup(K.path) {
            warnings.append(
                v.invalid("ignored: the health check always answers at /healthcheck (the option was removed in oslo.middleware 7.0)")
                    .description)
        }
        return options
    }

    // MARK: Warnings

    /// One warning per unknown section, and per unknown option in a section we know.
    private mutating func warnAboutUnknownNames(backendIDs: Set<String>) {
        let storeSections = backendIDs.union(Section.reservedStores)
        let storeKeys = FilesystemStoreOptions.Key.all
        // [DEFAULT] is every section's fallback, so any option that some section knows is valid there.
        let everyKey = Key.defaults.union(Key.glanceStore).union(storeKeys).union(HealthcheckOptions.Key.all)
            .union(KeystoneAuthOptions.Key.all).union(PolicyOptions.Key.all)
            .union(Key.imageFormat).union([Key.connection, Key.flavor, Key.configFile])
        for section in file.sections {
            let known: Set<String>
            switch section.name {
            case Section.defaults: known = everyKey
            // Store options here are read (legacy mode) or already warned about (multi-store mode).
            case Section.glanceStore: known = Key.glanceStore.union(storeKeys)
            case Section.database: known = [Key.connection, DatabaseOptions.Key.maxPoolSize, DatabaseOptions.Key.poolTimeout]
            case Section.imageFormat: known = Key.imageFormat
            case Section.importFiltering: known = Key.importFiltering
            case Section.pasteDeploy: known = [Key.flavor, Key.configFile]
            case Section.healthcheck: known = HealthcheckOptions.Key.all
            case Section.metrics: known = MetricsOptions.Key.all
            case Section.keystoneAuthtoken:
                for entry in section.entries where KeystoneAuthOptions.Key.notImplemented.contains(entry.key) {
                    warn(entry, "not implemented by ImageStore, ignored")
                }
                known = KeystoneAuthOptions.Key.all.union(KeystoneAuthOptions.Key.notImplemented)
            case Section.osloPolicy:
                for entry in section.entries where PolicyOptions.Key.notImplemented.contains(entry.key) {
                    warn(entry, "not implemented by ImageStore, ignored")
                }
                known = PolicyOptions.Key.all.union(PolicyOptions.Key.notImplemented)
            case let name where storeSections.contains(name): known = storeKeys
            default:
                warnings.append(
                    ConfigurationError.format(
                        path: file.path, line: section.line, section: section.name, key: nil,
                        message: "unknown section, ignored"))
                continue
            }
            for entry in section.entries where !known.contains(entry.key) {
                warn(entry, "unknown option, ignored")
            }
        }
    }

    private mutating func warn(_ entry: INIFile.Entry, _ message: String) {
        warnings.append(
            ConfigurationError.format(
                path: entry.origin ?? file.path, line: entry.origin == nil ? entry.line : nil, section: entry.section, key: entry.key,
                message: message))
    }

    /// Every option name some section knows: what the environment and secrets layers are asked for.
    static var everyKey: Set<String> {
        Key.defaults.union(Key.glanceStore).union(FilesystemStoreOptions.Key.all).union(HealthcheckOptions.Key.all)
            .union(KeystoneAuthOptions.Key.all).union(PolicyOptions.Key.all).union(MetricsOptions.Key.all)
            .union(Key.importFiltering).union(Key.imageFormat).union([
                Key.connection, Key.flavor, Key.configFile, DatabaseOptions.Key.maxPoolSize, DatabaseOptions.Key.poolTimeout,
            ])
    }

    private func value(_ section: String, _ key: String) -> OptionValue? {
        file.entry(section: section, key: key).map { OptionValue(path: file.path, entry: $0) }
    }
}
