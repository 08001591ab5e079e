/// A configuration problem that stops start-up: a bad value, a syntax error, a missing file.
///
/// Its text names where the problem is, so an operator can jump straight to it:
/// `/etc/imagestore.conf:12: [DEFAULT] bind_port: "abc" is not an integer between 1 and 65535`.
/// Warnings (unknown sections and options) use the same shape, see `ServiceConfiguration.warnings`.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file the problem is in; nil for text that did not come from a file.
    public var path: String?
    /// 1-based line number, when the problem is on a line.
    public var line: Int?
    /// The section (`DEFAULT`, `glance_store`, …), when known.
    public var section: String?
    /// The option name, when the problem is about one option.
    public var key: String?
    /// What is wrong, e.g. `"abc" is not an integer between 1 and 65535`.
    public var reason: String

    public init(path: String?, line: Int? = nil, section: String? = nil, key: String? = nil, reason: String) {
        self.path = path
        self.line = line
        self.section = section
        self.key = key
        self.reason = reason
    }

    public var description: String {
        Self.format(path: path, line: line, section: section, key: key, message: reason)
    }

    /// `path:line: [section] key: message`, leaving out the parts that are not known.
    static func format(path: String?, line: Int?, section: String?, key: String?, message: String) -> String {
        var text = path ?? "<configuration>"
        if let line { text += ":\(line)" }
        text += ": "
        if let section {
            text += "[\(section)]"
            if let key { text += " \(key)" }
            text += ": "
        } else if let key {
            text += "\(key): "
        }
        return text + message
    }
}
