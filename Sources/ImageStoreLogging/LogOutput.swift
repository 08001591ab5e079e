import Foundation
import ImageStoreConfig
import ImageStoreCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where the server's log lines go, as oslo.log sets it up from `[DEFAULT]`: `log_file` (appended),
/// standard error with `use_stderr`, standard output when neither; text or, with `use_json`, one JSON
/// object per line; `debug` chooses the level.
///
/// Lines are written by one thread of their own, in order: a log file on a slow or hung disk delays
/// the log, never a request. At most `capacity` lines wait; past that, lines are dropped and the next
/// line written says how many were. SIGHUP calls `apply(_:)` (level, format, file reopened: what
/// logrotate needs after moving the file away).
public final class LogOutput: Sendable {
    /// Lines waiting for the writer thread before new ones are dropped (about a few MB).
    public static let capacity = 10_000
    /// The most opening the log file may take at start-up (a log file on a hung share must not hang it).
    public static let openDeadline: Duration = .seconds(5)

    private struct State {
        var options: LoggingOptions
        var pending = 0
        var dropped = 0
    }

    private let state: Mutex<State>
    private let writer = BlockingCallExecutor(name: "imagestore-log")
    /// Touched only on the writer thread.
    private let descriptors: Descriptors

    /// Opens `log_file` (when set) under `openDeadline`.
    /// - Throws: `ConfigurationError` naming `log_file` when it cannot be opened.
    public init(options: LoggingOptions) throws {
        state = Mutex(State(options: options))
        descriptors = Descriptors()
        if let path = options.logFile {
            let descriptors = self.descriptors
            let outcome = writer.runAndWait(deadline: Self.openDeadline) { descriptors.open(path) }
            switch outcome {
            case .completed(nil): break
            case .completed(let error?):
                throw ConfigurationError(path: nil, section: "DEFAULT", key: "log_file", reason: "cannot open \(path): \(error)")
            case .timedOut:
                throw ConfigurationError(
                    path: nil, section: "DEFAULT", key: "log_file",
                    reason: "opening \(path) did not finish within \(Self.openDeadline): is it on a share that does not answer?")
            }
        }
    }

    deinit { descriptors.closeFile() }

    /// The options in force.
    public var options: LoggingOptions { state.withLock { $0.options } }

    /// `debug` → debug, otherwise info: the level of every logger that did not set its own.
    public var level: Logger.Level { state.withLock { $0.options.debug ? .debug : .info } }

    /// Lines dropped so far because the writer fell `capacity` lines behind.
    public var droppedLines: Int { state.withLock { $0.dropped } }

    /// New options (SIGHUP): the level and format change at once; the log file is closed and opened
    /// again by path after the lines already queued are written, so logrotate's renamed file gets those
    /// and the new file everything after.
    public func apply(_ options: LoggingOptions) {
        state.withLock { $0.options = options }
        let descriptors = self.descriptors
        writer.submit {
            descriptors.closeFile()
            if let path = options.logFile, let error = descriptors.open(path) {
                // Nowhere else to say it: the file is what failed.
                descriptors.write("imagestore: cannot reopen log_file \(path): \(error)\n", toFile: false, stderr: true, stdout: false)
            }
        }
    }

    /// Queues one formatted line (with its newline); never waits.
    func write(_ line: String) {
        let (accepted, droppedBefore, options) = state.withLock { state -> (Bool, Int, LoggingOptions) in
            guard state.pending < Self.capacity else {
                state.dropped += 1
                return (false, 0, state.options)
            }
            state.pending += 1
            let dropped = state.dropped
            state.dropped = 0
            return (true, dropped, state.options)
        }
        guard accepted else { return }
        let descriptors = self.descriptors
        let toFile = options.logFile != nil
        let stdout = !toFile && !options.useStderr
        let text = droppedBefore > 0 ? "imagestore: \(droppedBefore) log lines dropped (the log writer fell behind)\n" + line : line
        writer.submit {
            descriptors.write(text, toFile: toFile, stderr: options.useStderr, stdout: stdout)
            self.state.withLock { $0.pending -= 1 }
        }
    }

    /// Waits until every line queued so far is written, at most `deadline`; whether it got there.
    @discardableResult
    public func flush(deadline: Duration = .seconds(2)) -> Bool {
        if case .completed = writer.runAndWait(deadline: deadline, {}) { return true }
        return false
    }
}

/// The log file's descriptor, used only on the writer thread (hence unchecked).
private final class Descriptors: @unchecked Sendable {
    private var file: Int32 = -1

    /// Opens `path` for appending (created 0640); nil on success, else the error text.
    func open(_ path: String) -> String? {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        file = fd
        return nil
    }

    func closeFile() {
        if file >= 0 { Glibc.close(file) }
        file = -1
    }

    func write(_ text: String, toFile: Bool, stderr: Bool, stdout: Bool) {
        var bytes = Array(text.utf8)
        if toFile && file >= 0 {
            Self.writeAll(file, &bytes)
        } else if toFile && !stderr {
            // log_file could not be reopened (SIGHUP): standard error rather than nowhere.
            Self.writeAll(STDERR_FILENO, &bytes)
        }
        if stderr { Self.writeAll(STDERR_FILENO, &bytes) }
        if stdout { Self.writeAll(STDOUT_FILENO, &bytes) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: inout [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }  // a full disk loses the line, as Python's logging does
            offset += n
        }
    }
}
