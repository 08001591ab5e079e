/// One value in the caller's credentials, as oslo.policy sees it after `str()`.
public enum CredentialValue: Sendable, Equatable {
    case string(String)
    case bool(Bool)
    case none
    /// A list matches when any element does (oslo's `_find_in_dict`).
    case list([String])

    init(_ text: String?) { self = text.map { .string($0) } ?? .none }

    func matches(_ text: String) -> Bool {
        switch self {
        case .string(let value): value == text
        case .bool(let value): PolicyTarget.python(value) == text
        case .none: text == PolicyTarget.pythonNone
        case .list(let values): values.contains(text)
        }
    }
}

/// The caller's attributes rules test (`project_id:%(owner)s` reads `project_id` here).
public struct PolicyCredentials: Sendable, Equatable {
    public var values: [String: CredentialValue]
    public init(_ values: [String: CredentialValue]) { self.values = values }
    public subscript(key: String) -> CredentialValue? { values[key] }
}

/// A parsed check string (oslo.policy's `Check` tree).
indirect enum PolicyRule: Sendable, Equatable, CustomStringConvertible {
    /// `@`, or the empty rule.
    case allow
    /// `!`.
    case deny
    /// `rule:name`: another rule's result.
    case rule(String)
    /// `role:name` (the match may use `%(key)s` from the target): case-insensitive role membership.
    case role(MatchTemplate)
    /// `key:%(attr)s` or `key:value`: the credential at the dotted `key` path equals the match.
    case credential(path: [String], match: MatchTemplate)
    /// `'literal':%(attr)s`, `True:%(attr)s`: a Python literal compared with the match.
    case literal(String, match: MatchTemplate)
    case not(PolicyRule)
    case and([PolicyRule])
    case or([PolicyRule])

    var description: String {
        switch self {
        case .allow: "@"
        case .deny: "!"
        case .rule(let name): "rule:\(name)"
        case .role(let match): "role:\(match)"
        case .credential(let path, let match): "\(path.joined(separator: ".")):\(match)"
        case .literal(let value, let match): "'\(value)':\(match)"
        case .not(let rule): "not \(rule)"
        case .and(let rules): "(" + rules.map(\.description).joined(separator: " and ") + ")"
        case .or(let rules): "(" + rules.map(\.description).joined(separator: " or ") + ")"
        }
    }

    /// The rule names this rule refers to (for the undefined-rule and cycle checks at load time).
    var references: [String] {
        switch self {
        case .rule(let name): [name]
        case .not(let rule): rule.references
        case .and(let rules), .or(let rules): rules.flatMap(\.references)
        default: []
        }
    }

    func evaluate(_ target: PolicyTarget, _ credentials: PolicyCredentials, rules: [String: PolicyRule]) -> Bool {
        switch self {
        case .allow: return true
        case .deny: return false
        case .rule(let name):
            // oslo fails closed on an unknown rule; the enforcer refuses to load one, so this is belt and braces.
            return rules[name]?.evaluate(target, credentials, rules: rules) ?? false
        case .role(let template):
            guard let role = template.render(target) else { return false }
            guard case .list(let roles)? = credentials["roles"] else { return false }
            return roles.contains { $0.lowercased() == role.lowercased() }
        case .credential(let path, let template):
            guard let match = template.render(target) else { return false }
            return Self.find(path, in: credentials, match)
        case .literal(let value, let template):
            guard let match = template.render(target) else { return false }
            return match == value
        case .not(let rule):
            return !rule.evaluate(target, credentials, rules: rules)
        case .and(let rules_):
            return rules_.allSatisfy { $0.evaluate(target, credentials, rules: rules) }
        case .or(let rules_):
            return rules_.contains { $0.evaluate(target, credentials, rules: rules) }
        }
    }

    /// Credentials are flat here, so a dotted path longer than one key never matches (as in oslo,
    /// where the nested lookup fails on a string).
    private static func find(_ path: [String], in credentials: PolicyCredentials, _ match: String) -> Bool {
        guard path.count == 1, let value = credentials[path[0]] else { return false }
        return value.matches(match)
    }
}

/// The right-hand side of a check: text with `%(key)s` placeholders filled from the target, as
/// Python's `match % target`. A placeholder whose key the target lacks makes the check false.
struct MatchTemplate: Sendable, Equatable, CustomStringConvertible {
    enum Piece: Sendable, Equatable {
        case text(String)
        case key(String)
    }

    let pieces: [Piece]
    let source: String

    var description: String { source }

    /// Parses `%(key)s` and `%%`; any other `%` form is an error (Python would raise, not return false).
    init(_ source: String) throws(PolicyParseError) {
        self.source = source
        var pieces: [Piece] = []
        var text = ""
        var rest = Substring(source)
        while let percent = rest.firstIndex(of: "%") {
            text += rest[..<percent]
            rest = rest[rest.index(after: percent)...]
            if rest.first == "%" {
                text += "%"
                rest = rest.dropFirst()
                continue
            }
            guard rest.first == "(", let close = rest.firstIndex(of: ")") else {
                throw PolicyParseError("'\(source)': a '%' must start %(name)s or be doubled (%%)")
            }
            let key = String(rest[rest.index(after: rest.startIndex)..<close])
            let afterClose = rest[rest.index(after: close)...]
            guard afterClose.first == "s" else {
                throw PolicyParseError("'\(source)': only %(name)s placeholders are supported")
            }
            if !text.isEmpty { pieces.append(.text(text)) }
            text = ""
            pieces.append(.key(key))
            rest = afterClose.dropFirst()
        }
        text += rest
        if !text.isEmpty { pieces.append(.text(text)) }
        self.pieces = pieces
    }

    func render(_ target: PolicyTarget) -> String? {
        var result = ""
        for piece in pieces {
            switch piece {
            case .text(let text): result += text
            case .key(let key):
                guard let value = target[key] else { return nil }
                result += value
            }
        }
        return result
    }
}
