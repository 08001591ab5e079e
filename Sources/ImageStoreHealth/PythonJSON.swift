import ImageStoreCore

/// A JSON value serialized exactly like Python's `json.dumps(value, indent=4, sort_keys=True)`
/// (ASCII-only output, `": "` after keys, empty containers as `[]` / `{}`), which is what
/// oslo.middleware's healthcheck sends.
public indirect enum PythonJSON: Sendable, Equatable, ExpressibleByStringLiteral {
    case string(String)
    case bool(Bool)
    case int(Int)
    case null
    case array([PythonJSON])
    case object([String: PythonJSON])

    public init(stringLiteral value: String) { self = .string(value) }

    public func dumps(indent: Int = 4) -> String {
        var out = ""
        write(to: &out, indent: indent, level: 0)
        return out
    }

    private func write(to out: inout String, indent: Int, level: Int) {
        switch self {
        case .string(let text): JSONString.write(text, to: &out, ensureASCII: true)
        case .bool(let value): out += value ? "true" : "false"
        case .int(let value): out += String(value)
        case .null: out += "null"
        case .array(let items):
            guard !items.isEmpty else { return out += "[]" }
            out += "[\n"
            for (index, item) in items.enumerated() {
                out += String(repeating: " ", count: indent * (level + 1))
                item.write(to: &out, indent: indent, level: level + 1)
                out += index == items.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent * level) + "]"
        case .object(let members):
            guard !members.isEmpty else { return out += "{}" }
            out += "{\n"
            // Python sorts keys by code point; Swift's String order agrees for the ASCII keys used here.
            let keys = members.keys.sorted { Array($0.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.unicodeScalars.map(\.value)) }
            for (index, key) in keys.enumerated() {
                out += String(repeating: " ", count: indent * (level + 1))
                JSONString.write(key, to: &out, ensureASCII: true)
                out += ": "
                members[key]!.write(to: &out, indent: indent, level: level + 1)
                out += index == keys.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent * level) + "}"
        }
    }
}
