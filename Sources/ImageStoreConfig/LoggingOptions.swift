/// oslo.log's options in `[DEFAULT]`, with oslo.log's names and defaults, so a Glance deployer's
/// logging settings carry over: `debug`, `log_file`, `use_json`, `use_stderr`.
public struct LoggingOptions: Sendable, Equatable {
    /// `debug`: log at debug level (otherwise info and above).
    public var debug: Bool
    /// `log_file`: append log lines to this file; nil: standard output (or standard error with
    /// `use_stderr`), as oslo.log falls back to stdout when no other handler is configured.
    public var logFile: String?
    /// `use_json`: one JSON object per line (oslo.log's JSONFormatter role) instead of text.
    public var useJSON: Bool
    /// `use_stderr`: also log to standard error.
    public var useStderr: Bool

    public init(debug: Bool = false, logFile: String? = nil, useJSON: Bool = false, useStderr: Bool = false) {
        self.debug = debug
        self.logFile = logFile
        self.useJSON = useJSON
        self.useStderr = useStderr
    }

    enum Key {
        static let debug = "debug"
        static let logFile = "log_file"
        static let useJSON = "use_json"
        static let useStderr = "use_stderr"
        static let all: Set<String> = [debug, logFile, useJSON, useStderr]
    }
}
