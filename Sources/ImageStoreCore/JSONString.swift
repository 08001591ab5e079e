import Foundation

/// A JSON string literal as RFC 8259 writes it: the short escapes for `"`, `\`, newline, carriage
/// return and tab, `\u00XX` for other control characters, every other character as it is (UTF-8).
/// Shared by the API's JSON and the JSON log lines. (The healthcheck's Python-compatible JSON escapes
/// differently, `ensure_ascii`, and has its own.)
public enum JSONString {
    public static func write(_ text: String, to out: inout String) {
        out += "\""
        // Most strings (ids, names, dates) need no escape: appended whole, not scalar by scalar.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out += text
            out += "\""
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    public static func quoted(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count + 2)
        write(text, to: &out)
        return out
    }
}
