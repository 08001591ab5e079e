import Foundation

/// A parsed INI file in oslo.config's dialect (the syntax of glance-api.conf), without any meaning
/// attached to its options. `ServiceConfiguration` is built from one; other modules can read extra
/// keys from it with `value(section:key:)`, which falls back to `[DEFAULT]` as oslo.config does.
///
/// Syntax, as oslo.config's parser reads it:
/// - `[section]` starts a section; a section given twice is merged.
/// - `key = value`; key and value are trimmed, and a value wrapped in matching `"` or `'` is unwrapped.
///   A repeated key in a section: the last one wins.
/// - Lines whose first non-blank character is `#` or `;` are comments. There are no inline comments:
///   `bind_port = 9292 # web` is the value `9292 # web`.
/// - A line starting with whitespace continues the value above it (joined with a newline); a blank
///   line ends the value.
/// - An option before the first section is an error.
///
/// ```swift
/// let file = try INIFile.load(path: "/etc/imagestore.conf")
/// let datadir = file.value(section: "default_backend", key: "filesystem_store_datadir")
/// ```
public struct INIFile: Sendable, Equatable {
    /// One `key = value` (after continuation lines were joined).
    public struct Entry: Sendable, Equatable {
        /// The section the entry is in (for a `[DEFAULT]` fallback: `DEFAULT`).
        public var section: String
        public var key: String
        public var value: String
        /// 1-based line of the `key =` line (of the last one, for a repeated key).
        public var line: Int
        /// Where the value came from when a layer over the file set it (`environment variable
        /// IMAGESTORE__DATABASE__CONNECTION`, `secrets file /run/secrets/imagestore/database.connection`);
        /// nil for the file's own lines. Messages then name it instead of file:line.
        public var origin: String? = nil
    }

    /// One section, its entries in the order their keys first appeared.
    public struct Section: Sendable, Equatable {
        public var name: String
        /// 1-based line of the (first) `[name]` header.
        public var line: Int
        public var entries: [Entry]

        /// The entry for `key` in this section only (no `[DEFAULT]` fallback).
        public func entry(_ key: String) -> Entry? { entries.first { $0.key == key } }
    }

    /// oslo.config's fallback section for every other section's lookups.
    public static let defaultSection = "DEFAULT"

    /// Where the text came from (used in error and warning messages); nil if not from a file.
    public let path: String?
    /// Sections in the order they first appeared.
    public private(set) var sections: [Section]

    /// Parses INI text.
    /// - Parameters:
    ///   - allowColonSeparator: also accept `key: value` (whichever of `=`/`:` comes first), as Python's
    ///     configparser does. Needed for paste-deploy files (`/v2: apiv2app`); glance-api.conf style
    ///     files use `=` only.
    /// - Throws: `ConfigurationError` naming the line for a syntax error.
    public init(text: String, path: String?, allowColonSeparator: Bool = false) throws {
        self.path = path
        self.sections = []
        var sectionIndex: Int?
        // The entry being built, kept aside so continuation lines can extend it.
        var pending: (key: String, lines: [String], line: Int)?

        func flush() {
            guard let current = pending, let index = sectionIndex else { return }
            pending = nil
            let entry = Entry(
                section: sections[index].name, key: current.key, value: current.lines.joined(separator: "\n"),
                line: current.line)
            if let existing = sections[index].entries.firstIndex(where: { $0.key == entry.key }) {
                sections[index].entries[existing] = entry  // last one wins, like oslo.config
            } else {
                sections[index].entries.append(entry)
            }
        }

        var lineNumber = 0
        var body = Substring(text)
        if body.hasPrefix("\u{FEFF}") { body = body.dropFirst() }  // a UTF-8 BOM some editors write
        // "\r\n" is one Character in Swift, so it is a separator of its own.
        for line in body.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let stripped = line.trimmingCharacters(in: .whitespaces)
            let sectionName = sectionIndex.map { sections[$0].name }
            func syntaxError(_ reason: String) -> ConfigurationError {
                ConfigurationError(path: path, line: lineNumber, section: sectionName, reason: reason)
            }

            if stripped.isEmpty {
                flush()  // a blank line ends a multi-line value (oslo.config)
                continue
            }
            if stripped.hasPrefix("#") || stripped.hasPrefix(";") { continue }
            if let first = line.first, first == " " || first == "\t" {
                guard pending != nil else {
                    throw syntaxError("unexpected continuation line (an indented line must continue the value above it)")
                }
                pending!.lines.append(stripped)
                continue
            }
            flush()

            if stripped.hasPrefix("[") {
                guard stripped.hasSuffix("]") else { throw syntaxError("invalid section header \(quoted(stripped)): it must end with ]") }
                let name = stripped.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                guard !name.isEmpty else { throw syntaxError("empty section name") }
                if let existing = sections.firstIndex(where: { $0.name == name }) {
                    sectionIndex = existing
                } else {
                    sections.append(Section(name: name, line: lineNumber, entries: []))
                    sectionIndex = sections.count - 1
                }
                continue
            }

            let separator: String.Index? =
                allowColonSeparator ? stripped.firstIndex(where: { $0 == "=" || $0 == ":" }) : stripped.firstIndex(of: "=")
            guard let separator else {
                throw syntaxError("expected \"key = value\", a [section] header or a comment, found \(quoted(stripped))")
            }
            let key = stripped[..<separator].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { throw syntaxError("missing option name before \"=\"") }
            guard sectionIndex != nil else {
                throw ConfigurationError(
                    path: path, line: lineNumber, key: key, reason: "option outside any section (add a [DEFAULT] header above it)")
            }
            var value = stripped[stripped.index(after: separator)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let quote = value.first, quote == "\"" || quote == "'", value.last == quote {
                value = String(value.dropFirst().dropLast())  // oslo.config unwraps one pair of quotes
            }
            pending = (key, [value], lineNumber)
        }
        flush()
    }

    /// Reads and parses a file.
    /// - Throws: `ConfigurationError` if the file cannot be read, is not UTF-8, or has a syntax error.
    public static func load(path: String, allowColonSeparator: Bool = false) throws -> INIFile {
        try INIFile(text: readTextFile(path), path: path, allowColonSeparator: allowColonSeparator)
    }

    /// Sets `key` in `section` (created at the end if missing) to `value`, replacing the file's entry:
    /// how the environment and secrets layers override the file.
    public mutating func override(section name: String, key: String, value: String, origin: String) {
        let entry = Entry(section: name, key: key, value: value, line: 0, origin: origin)
        if let index = sections.firstIndex(where: { $0.name == name }) {
            if let position = sections[index].entries.firstIndex(where: { $0.key == key }) {
                sections[index].entries[position] = entry
            } else {
                sections[index].entries.append(entry)
            }
        } else {
            sections.append(Section(name: name, line: 0, entries: [entry]))
        }
    }

    /// The section named `name`, if the file has one.
    public func section(_ name: String) -> Section? { sections.first { $0.name == name } }

    /// The entry for `key` in `section`, or else in `[DEFAULT]` (oslo.config's lookup).
    public func entry(section: String, key: String) -> Entry? {
        self.section(section)?.entry(key) ?? self.section(Self.defaultSection)?.entry(key)
    }

    /// The value of `key` in `section`, or else in `[DEFAULT]` (oslo.config's lookup).
    public func value(section: String, key: String) -> String? {
        entry(section: section, key: key)?.value
    }
}

/// Reads a whole text file, turning failures into `ConfigurationError`s that name the file.
func readTextFile(_ path: String) throws -> String {
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        let reason =
            FileManager.default.fileExists(atPath: path)
            ? "cannot read the file: \(error.localizedDescription)" : "file not found"
        throw ConfigurationError(path: path, reason: reason)
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw ConfigurationError(path: path, reason: "the file is not valid UTF-8 text")
    }
    return text
}

/// A value as error messages show it: in double quotes, newlines visible.
func quoted(_ text: some StringProtocol) -> String {
    "\"" + text.replacingOccurrences(of: "\n", with: "\\n") + "\""
}
