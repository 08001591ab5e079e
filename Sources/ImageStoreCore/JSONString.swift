import Foundation

/// A JSON string literal as RFC 8259 writes it: the short escapes for `"`, `\`, newline, carriage
/// return and tab, `\u00XX` for other control characters, every other character as it is (UTF-8).
/// Shared by the API's JSON and the JSON log lines; with `ensureASCII`, as Python's `json.dumps` writes
/// it (the healthcheck's JSON): also `\b` and `\f`, and `\uXXXX` (UTF-16) for all but printable ASCII.
public enum JSONString {
    public static func write(_ text: String, to out: inout String, ensureASCII: Bool = false) {
        out += "\""
        // Most strings (ids, names, dates) need no escape: appended whole, not scalar by scalar.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || (ensureASCII && $0 >= 0x7F) }) {
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
            case "\u{08}" where ensureASCII: out += "\\b"
            case "\u{0C}" where ensureASCII: out += "\\f"
            case _ where scalar.value < 0x20 || (ensureASCII && scalar.value >= 0x7F):
                for unit in String(scalar).utf16 { out += String(format: "\\u%04x", UInt32(unit)) }
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
