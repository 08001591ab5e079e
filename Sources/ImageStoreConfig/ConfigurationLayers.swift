import Configuration
import Foundation

/// Values that override the INI file, highest first: a secrets directory (a Kubernetes Secret volume,
/// one file per option), then environment variables. The file stays what deployers write; passwords
/// and database URLs can stay out of it (and out of ConfigMaps).
///
/// - Environment: `IMAGESTORE__<SECTION>__<KEY>`, upper case: `IMAGESTORE__DATABASE__CONNECTION` is
///   `[database] connection`, `IMAGESTORE__DEFAULT__DEBUG` is `[DEFAULT] debug`. Read through
///   swift-configuration's `EnvironmentVariablesProvider` (its key encoding: components upper-cased and
///   joined with `_`, so the key `IMAGESTORE`, ``, section, ``, key gives the double underscores).
/// - Secrets directory: a file named `<section>.<key>` (`database.connection`,
///   `keystone_authtoken.password`, `DEFAULT.debug`), its contents trimmed. Read by this type, not by
///   swift-configuration's `DirectoryFilesProvider`: that one (1.4.0) skips symbolic links, and every
///   file of a Kubernetes Secret volume is a symbolic link into `..data/`.
///
/// The overrides become entries of the `INIFile` (with their origin), so `ConfigurationReader` parses
/// every value once, the same way, and its messages name the variable or the file.
public struct ConfigurationLayers: Sendable {
    /// The environment to read `IMAGESTORE__…` variables from.
    public var environment: [String: String]
    /// The secrets directory; nil: none.
    public var secretsDirectory: String?

    public static let environmentPrefix = "IMAGESTORE"
    /// The environment variable naming the secrets directory when `--secrets-dir` is not given.
    public static let secretsDirectoryVariable = "IMAGESTORE_SECRETS_DIR"

    public init(environment: [String: String] = [:], secretsDirectory: String? = nil) {
        self.environment = environment
        self.secretsDirectory = secretsDirectory
    }

    /// This process's environment, and the secrets directory it names (unless `secretsDirectory` is given).
    public static func process(secretsDirectory: String? = nil) -> ConfigurationLayers {
        let environment = ProcessInfo.processInfo.environment
        return ConfigurationLayers(
            environment: environment, secretsDirectory: secretsDirectory ?? environment[secretsDirectoryVariable].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The environment variable for `[section] key`.
    public static func variableName(section: String, key: String) -> String {
        "\(environmentPrefix)__\(section.uppercased())__\(key.uppercased())"
    }

    /// `file` with every option the layers set replaced (or added).
    /// - Throws: `ConfigurationError` for a secrets directory that is missing or unreadable.
    public func apply(to file: INIFile) throws -> INIFile {
        let environment = EnvironmentVariablesProvider(environmentVariables: self.environment)
        let secrets = try secretsDirectory.map { try SecretsDirectory(path: $0) }
        var layered = file
        func lookUp(_ section: String) throws {
            for key in ConfigurationReader.everyKey.sorted() {
                if let secret = secrets?.value(section: section, key: key) {
                    layered.override(section: section, key: key, value: secret.value, origin: "secrets file \(secret.path)")
                    continue
                }
                let result = try environment.value(forKey: AbsoluteConfigKey([Self.environmentPrefix, "", section, "", key]), type: .string)
                if case .string(let value)? = result.value?.content {
                    layered.override(section: section, key: key, value: value, origin: "environment variable \(result.encodedKey)")
                }
            }
        }
        // [DEFAULT] first: enabled_backends, which names the store sections, may come from a layer.
        try lookUp(INIFile.defaultSection)
        var sections = ConfigurationReader.Section.ours.union(ConfigurationReader.Section.reservedStores)
        sections.remove(INIFile.defaultSection)
        for item in (layered.value(section: INIFile.defaultSection, key: ConfigurationReader.Key.enabledBackends) ?? "")
            .split(separator: ",")
        {
            let id = item.split(separator: ":").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if !id.isEmpty { sections.insert(id) }
        }
        for section in sections.sorted() { try lookUp(section) }
        return layered
    }
}

/// A directory of `<section>.<key>` files, read once (start-up, SIGHUP), following symbolic links.
struct SecretsDirectory {
    let path: String
    private var files: [String: String] = [:]

    init(path: String) throws {
        self.path = path
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw ConfigurationError(path: path, reason: "the secrets directory cannot be read: \(error.localizedDescription)")
        }
        // Kubernetes' own entries (..data, ..2026_12_03…) and any other dot file are not options.
        for name in names where !name.hasPrefix(".") && name.contains(".") {
            let file = (path as NSString).appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            files[name] = try readTextFile(file).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    func value(section: String, key: String) -> (value: String, path: String)? {
        let name = "\(section).\(key)"
        return files[name].map { ($0, (path as NSString).appendingPathComponent(name)) }
    }
}
