import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One option's text together with where it was found, converted to a type the way oslo.config's
/// types do. Every failure is a `ConfigurationError` naming the file, line, section and key.
struct OptionValue {
    let path: String?
    let entry: INIFile.Entry

    init(path: String?, entry: INIFile.Entry) {
        self.path = path
        self.entry = entry
    }

    var text: String { entry.value }

    func invalid(_ reason: String) -> ConfigurationError {
        if let origin = entry.origin {
            return ConfigurationError(path: origin, section: entry.section, key: entry.key, reason: reason)
        }
        return ConfigurationError(path: path, line: entry.line, section: entry.section, key: entry.key, reason: reason)
    }

    /// The text, which must not be empty.
    func nonEmptyString() throws -> String {
        guard !text.isEmpty else { throw invalid("must not be empty") }
        return text
    }

    /// The text, or nil for an empty value (oslo.config gives "", which means "not set" for every
    /// optional path or name we read).
    var optionalString: String? { text.isEmpty ? nil : text }

    func int(in range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(text), range.contains(value) else { throw invalid("\(quoted(text)) is not \(describe(range))") }
        return value
    }

    func int64(in range: ClosedRange<Int64>) throws -> Int64 {
        // Always both bounds: for byte sizes the maximum (8 EiB) is worth showing.
        guard let value = Int64(text), range.contains(value) else {
            throw invalid("\(quoted(text)) is not an integer between \(range.lowerBound) and \(range.upperBound)")
        }
        return value
    }

    /// The one parser of options written in seconds as Glance writes them (fractions allowed, `2.5`),
    /// `> minimum` or `>= minimum`, into the `Duration` every call site uses as it is.
    func seconds(greaterThan minimum: Double, orEqual: Bool = false) throws -> Duration {
        let bound = orEqual ? "at least" : "greater than"
        guard let value = Double(text), value.isFinite, orEqual ? value >= minimum : value > minimum else {
            throw invalid("\(quoted(text)) is not a number of seconds \(bound) \(format(minimum))")
        }
        return Self.duration(seconds: value)
    }

    /// An option written in whole milliseconds (`mount_guard_timeout`, `check_timeout`…), within `range`.
    func milliseconds(in range: ClosedRange<Int>) throws -> Duration {
        .milliseconds(try int(in: range))
    }

    /// Seconds to a `Duration` rounded to the nanosecond, so `0.1` is exactly `.milliseconds(100)` (not
    /// the binary double's 0.1000000000000000055 s). Past Int64 nanoseconds (~292 years) it stays there:
    /// such a value means "never", and the nanosecond APIs downstream (NIO, Dispatch) would trap on more.
    static func duration(seconds: Double) -> Duration {
        let nanoseconds = (seconds * 1e9).rounded()
        return .nanoseconds(nanoseconds >= 0x1p63 ? Int64.max : Int64(nanoseconds))
    }

    /// oslo.config's boolean words (case-insensitive).
    func bool() throws -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw invalid("\(quoted(text)) is not a boolean (true/false, yes/no, on/off, 1/0)")
        }
    }

    /// Comma-separated items, trimmed, empty items dropped. Newlines (from continuation lines)
    /// separate items too, so a long list can be written one item per line.
    var list: [String] {
        text.split(whereSeparator: { $0 == "," || $0.isNewline })
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    private func describe<T: FixedWidthInteger>(_ range: ClosedRange<T>) -> String {
        if range.upperBound == T.max {
            return range.lowerBound == T.min ? "an integer" : "an integer of at least \(range.lowerBound)"
        }
        return "an integer between \(range.lowerBound) and \(range.upperBound)"
    }

    private func format(_ number: Double) -> String {
        number == number.rounded() ? String(Int(number)) : String(number)
    }
}

// MARK: - Value syntaxes shared by several options

enum ValueSyntax {
    /// Glance's `user_storage_quota`: digits, then optionally B, KB, MB, GB or TB (1024-based), no space.
    static func byteSize(_ text: String) -> Int64? {
        let units: [(suffix: String, factor: Int64)] = [
            ("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("TB", 1 << 40), ("B", 1),
        ]
        var digits = Substring(text)
        var factor: Int64 = 1
        for unit in units where digits.hasSuffix(unit.suffix) {
            digits = digits.dropLast(unit.suffix.count)
            factor = unit.factor
            break
        }
        // Digits only: Int64("+5") would accept a sign Glance's pattern (^\d+…$) does not.
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int64(digits) else {
            return nil
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: factor)
        return overflow ? nil : bytes
    }

    /// An `http://` or `https://` URL with a host, without trailing slashes; nil for anything else.
    static func httpBase(_ text: String) -> String? {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else { return nil }
        var result = text
        while result.hasSuffix("/") { result.removeLast() }
        return result
    }

    /// Path components, ignoring empty and `.` ones, so `/a//b/` and `/a/b` compare equal.
    static func pathComponents(_ path: String) -> [Substring] {
        path.split(separator: "/").filter { $0 != "." }
    }
}
