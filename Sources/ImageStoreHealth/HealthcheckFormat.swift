import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The body formats of oslo.middleware's healthcheck, in its offer order (order matters for ties).
public enum HealthcheckFormat: String, Sendable, CaseIterable {
    case plain = "text/plain"
    case html = "text/html"
    case json = "application/json"

    /// webob's `acceptable_offers` reduced to what oslo uses: each offer gets the q-value of the
    /// most specific range that matches it, q=0 excludes it, the highest q wins and ties go to the
    /// earlier offer. No header, `*/*`, a malformed header or no match at all: text/plain (oslo never
    /// answers 406).
    public static func negotiate(accept: String?) -> HealthcheckFormat {
        guard let accept, !accept.isEmpty else { return .plain }
        // (type, subtype, q)
        let ranges: [(String, String, Double)] = accept.split(separator: ",").compactMap { item in
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard let media = parts.first else { return nil }
            let typeParts = media.split(separator: "/", omittingEmptySubsequences: false)
            guard typeParts.count == 2, !typeParts[0].isEmpty, !typeParts[1].isEmpty else { return nil }
            var q = 1.0
            for parameter in parts.dropFirst() where parameter.hasPrefix("q=") {
                guard let value = Double(parameter.dropFirst(2)), (0...1).contains(value) else { return nil }
                q = value
            }
            return (String(typeParts[0]), String(typeParts[1]), q)
        }
        var best: (format: HealthcheckFormat, q: Double)?
        for format in allCases {
            let offer = format.rawValue.split(separator: "/").map(String.init)
            // Specificity: exact 2, type/* 1, */* 0.
            var match: (specificity: Int, q: Double)?
            for (type, subtype, q) in ranges {
                let specificity: Int
                if type == offer[0] && subtype == offer[1] {
                    specificity = 2
                } else if type == offer[0] && subtype == "*" {
                    specificity = 1
                } else if type == "*" && subtype == "*" {
                    specificity = 0
                } else {
                    continue
                }
                if match == nil || specificity > match!.specificity { match = (specificity, q) }
            }
            guard let match, match.q > 0 else { continue }
            if best == nil || match.q > best!.q { best = (format, match.q) }
        }
        return best?.format ?? .plain
    }
}

/// Facts about this server that the detailed formats add (oslo shows Python's instead).
public struct ServerFacts: Sendable {
    public var version: String
    public var hostname: String
    public var platform: String
    public var startedAt: ContinuousClock.Instant

    public init(version: String = ImageStoreVersion.current, startedAt: ContinuousClock.Instant = .now) {
        self.version = version
        self.startedAt = startedAt
        var name = [UInt8](repeating: 0, count: 256)
        hostname = gethostname(&name, name.count) == 0 ? String(decoding: name.prefix { $0 != 0 }, as: UTF8.self) : ""
        var info = utsname()
        if uname(&info) == 0 {
            let field = { (value: Any) -> String in
                withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            }
            platform = "\(field(info.sysname))-\(field(info.release))-\(field(info.machine))"
        } else {
            platform = ""
        }
    }
}

/// The version `/healthcheck?detailed` reports.
public enum ImageStoreVersion {
    public static let current = "0.1.0"
}

/// Renders a `HealthReport` exactly as oslo.middleware's templates do (text/plain, text/html,
/// application/json with `json.dumps(indent=4, sort_keys=True)`).
public struct HealthcheckRenderer: Sendable {
    public var detailed: Bool
    public var facts: ServerFacts

    public init(detailed: Bool, facts: ServerFacts = ServerFacts()) {
        self.detailed = detailed
        self.facts = facts
    }

    public func body(_ report: HealthReport, format: HealthcheckFormat, now: Date = Date()) -> String {
        switch format {
        case .plain: plain(report)
        case .html: html(report, now: now)
        case .json: json(report, now: now)
        }
    }

    /// One reason per line, no trailing newline; empty with no backends.
    func plain(_ report: HealthReport) -> String {
        report.reasons.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func json(_ report: HealthReport, now: Date) -> String {
        guard detailed else {
            return PythonJSON.object(["detailed": .bool(false), "reasons": .array(report.reasons.map(PythonJSON.string))])
                .dumps()
        }
        let reasons = report.entries.map { entry -> PythonJSON in
            .object([
                "backend": .string(entry.backend),
                "checked_at": .string(Self.pythonTime(entry.result.checkedAt)),
                "class": "HealthcheckResult",
                "details": .string(entry.result.details ?? ""),
                "reason": .string(entry.result.reason),
            ])
        }
        return PythonJSON.object([
            "detailed": .bool(true),
            "now": .string(Self.pythonTime(now)),
            "platform": .string(facts.platform),
            "reasons": .array(reasons),
            "uptime_seconds": .int(Int((ContinuousClock.now - facts.startedAt).components.seconds)),
            "version": .string(facts.version),
        ]).dumps()
    }

    /// oslo's HTML_RESPONSE_TEMPLATE as jinja2 renders it (its whitespace included); the detailed
    /// server facts are ours (version, platform, uptime) instead of Python's (GC, thread stacks).
    func html(_ report: HealthReport, now: Date) -> String {
        var out = "<HTML>\n<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>\n<BODY>\n"
        if detailed {
            out += "<H1>Server status</H1>\n"
            if !facts.hostname.isEmpty { out += "<B>Server hostname:</B><PRE>\(Self.escape(facts.hostname))</PRE>\n" }
            out += "<B>Current time:</B><PRE>\(Self.escape(Self.pythonTime(now)))</PRE>\n"
            out += "<B>Version:</B><PRE>\(Self.escape(facts.version))</PRE>\n"
            out += "<B>Platform:</B><PRE>\(Self.escape(facts.platform))</PRE>\n"
            out += "<B>Uptime:</B><PRE>\((ContinuousClock.now - facts.startedAt).components.seconds) s</PRE>\n"
            out += "<HR></HR>\n"
        } else {
            out += "\n"
        }
        out += "<H2>Result of \(report.entries.count) checks:</H2>\n<TABLE bgcolor=\"#ffffff\" border=\"1\">\n<TBODY>\n<TR>\n"
        out += detailed ? "<TH>\nKind\n</TH>\n<TH>\nReason\n</TH>\n<TH>\nDetails\n</TH>\n\n" : "\n<TH>\nReason\n</TH>\n"
        out += "</TR>\n"
        for entry in report.entries where !entry.result.reason.isEmpty {
            if detailed {
                out += "<TR>\n<TD>HealthcheckResult</TD>\n    <TD>\(Self.escape(entry.result.reason))</TD>\n"
                out += "<TD>\(Self.escape(entry.result.details ?? ""))</TD>\n</TR>"
            } else {
                out += "<TR>\n\n    <TD>\(Self.escape(entry.result.reason))</TD>\n\n</TR>"
            }
        }
        out += "\n</TBODY>\n</TABLE>\n<HR></HR>\n"
        out += detailed ? "</BODY>\n</HTML>" : "\n</BODY>\n</HTML>"
        return out
    }

    /// jinja2's `|e` (markupsafe).
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// Python's `str(datetime.utcnow())`: `2026-11-26 15:22:08.123456` (UTC).
    static func pythonTime(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        let micros = Int(((date.timeIntervalSince1970 - seconds) * 1_000_000).rounded(.down))
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let base = String(
            format: "%04d-%02d-%02d %02d:%02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
        // Python leaves the fraction out when it is zero.
        return micros == 0 ? base : base + String(format: ".%06d", micros)
    }
}
