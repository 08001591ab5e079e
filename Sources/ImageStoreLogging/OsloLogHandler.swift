import Foundation
import ImageStoreConfig
import ImageStoreCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// swift-log's handler for the server: every `Logger` made after `LoggingSystem.bootstrap` writes
/// through the one `LogOutput`, in oslo.log's text layout or as one JSON object per line.
///
/// A logger's level is the output's (`debug`, changed by SIGHUP) unless the code set one of its own.
public struct OsloLogHandler: LogHandler {
    public let label: String
    public let output: LogOutput
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private var ownLevel: Logger.Level?

    public init(label: String, output: LogOutput, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.output = output
        self.metadataProvider = metadataProvider
    }

    public var logLevel: Logger.Level {
        get { ownLevel ?? output.level }
        set { ownLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let given = event.metadata { merged.merge(given) { _, new in new } }
        let line = LogLineFormat.line(
            timestamp: LogLineFormat.now(), level: event.level, logger: label, message: event.message.description,
            metadata: merged, json: output.options.useJSON)
        output.write(line)
    }
}

/// The two layouts. The request's identity (request id, user, project) is pulled out of the metadata
/// into the places oslo.log's formatters put its context.
public enum LogLineFormat {
    /// Metadata keys that JSON lines carry at the top level (oslo.log's context fields and ours).
    public static let topLevelKeys = ["request_id", "image_id", "store", "user_id", "project_id"]

    /// oslo.log's level names (`levelname`); swift-log's notice and trace have no Python level.
    public static func levelName(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info: "INFO"
        case .notice: "NOTICE"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }

    /// `2026-12-02T23:59:00.123Z`, UTC.
    public static func now() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(spec.tv_nsec / 1_000_000))
    }

    public static func line(
        timestamp: String, level: Logger.Level, logger: String, message: String, metadata: Logger.Metadata, json: Bool
    ) -> String {
        json
            ? jsonLine(timestamp: timestamp, level: level, logger: logger, message: message, metadata: metadata)
            : textLine(timestamp: timestamp, level: level, logger: logger, message: message, metadata: metadata)
    }

    /// oslo.log's default `logging_context_format_string`, with the remaining metadata appended:
    /// `2026-12-02T23:59:00.123Z 4242 INFO imagestore [req-… user project] message key=value`.
    static func textLine(timestamp: String, level: Logger.Level, logger: String, message: String, metadata: Logger.Metadata) -> String {
        var context = "-"
        if let request = metadata["request_id"] {
            context = ["\(request)", metadata["user_id"].map { "\($0)" } ?? "-", metadata["project_id"].map { "\($0)" } ?? "-"]
                .joined(separator: " ")
        }
        var text = "\(timestamp) \(getpid()) \(levelName(level)) \(logger) [\(context)] \(message)"
        let rest = metadata.filter { !["request_id", "user_id", "project_id"].contains($0.key) }.sorted { $0.key < $1.key }
        for (key, value) in rest { text += " \(key)=\(value)" }
        return text + "\n"
    }

    /// One JSON object: `timestamp`, `level`, `logger`, `message`, `process`, the request's
    /// `request_id`, `image_id`, `store`, `user_id`, `project_id` when known, the rest under `extra`.
    static func jsonLine(timestamp: String, level: Logger.Level, logger: String, message: String, metadata: Logger.Metadata) -> String {
        var fields: [(String, String)] = [
            ("timestamp", quote(timestamp)), ("level", quote(levelName(level))), ("logger", quote(logger)),
            ("message", quote(message)), ("process", "\(getpid())"),
        ]
        for key in topLevelKeys {
            if let value = metadata[key] { fields.append((key, encode(value))) }
        }
        let extra = metadata.filter { !topLevelKeys.contains($0.key) }
        if !extra.isEmpty { fields.append(("extra", encode(.dictionary(extra)))) }
        return "{" + fields.map { "\(quote($0.0)):\($0.1)" }.joined(separator: ",") + "}\n"
    }

    static func encode(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): quote(text)
        case .stringConvertible(let convertible): quote(convertible.description)
        case .array(let values): "[" + values.map(encode).joined(separator: ",") + "]"
        case .dictionary(let entries):
            "{" + entries.sorted { $0.key < $1.key }.map { "\(quote($0.key)):\(encode($0.value))" }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal (RFC 8259 escapes), as the API writes them.
    static func quote(_ text: String) -> String { JSONString.quoted(text) }
}
