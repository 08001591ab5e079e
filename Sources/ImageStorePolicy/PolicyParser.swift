/// Why a check string could not be parsed.
public struct PolicyParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// oslo.policy's check-string language, parsed into a `PolicyRule`.
///
/// Grammar (the same trees oslo's shift-reduce parser builds): `or` binds loosest, then `and`, then
/// `not`; parentheses group; keywords are case-insensitive; tokens are separated by whitespace, and
/// parentheses may stick to a token's ends (`(role:a` and `role:b)`).
///
/// ```
/// expr    := and ('or' and)*
/// and     := unary ('and' unary)*
/// unary   := 'not' unary | '(' expr ')' | check
/// check   := '@' | '!' | 'rule:' name | 'role:' match | literal ':' match | path ':' match
/// ```
///
/// Where oslo logs an error and fails closed (an unparsable rule, an unknown check kind), this
/// parser throws, so a bad policy file stops the start-up instead of silently denying.
enum PolicyParser {
    enum Token: Equatable {
        case lparen, rparen, and, or, not
        case check(String)
    }

    /// Parses a check string; the empty string is `@` (always allowed), as in oslo.
    static func parse(_ text: String) throws(PolicyParseError) -> PolicyRule {
        if text.isEmpty { return .allow }
        let tokens = try tokenize(text)
        guard !tokens.isEmpty else { throw PolicyParseError("the rule is only whitespace") }
        var position = 0
        let rule = try parseOr(tokens, &position)
        guard position == tokens.count else {
            throw PolicyParseError("unexpected \(describe(tokens[position])) in '\(text)'")
        }
        return rule
    }

    /// oslo's old list syntax (JSON policy files): `[["a", "b"], ["c"]]` is `(a and b) or c`; an empty
    /// list allows.
    static func parse(list: [[String]]) throws(PolicyParseError) -> PolicyRule {
        if list.isEmpty { return .allow }
        var alternatives: [PolicyRule] = []
        for inner in list where !inner.isEmpty {
            var checks: [PolicyRule] = []
            for check in inner { checks.append(try parseCheck(check)) }
            alternatives.append(checks.count == 1 ? checks[0] : .and(checks))
        }
        switch alternatives.count {
        case 0: return .deny
        case 1: return alternatives[0]
        default: return .or(alternatives)
        }
    }

    static func tokenize(_ text: String) throws(PolicyParseError) -> [Token] {
        var tokens: [Token] = []
        for word in text.split(whereSeparator: \.isWhitespace) {
            var core = Substring(word)
            while core.first == "(" {
                tokens.append(.lparen)
                core = core.dropFirst()
            }
            var trailing = 0
            while core.last == ")" {
                trailing += 1
                core = core.dropLast()
            }
            if !core.isEmpty {
                switch core.lowercased() {
                case "and": tokens.append(.and)
                case "or": tokens.append(.or)
                case "not": tokens.append(.not)
                default:
                    if core.count >= 2, let first = core.first, first == core.last, first == "\"" || first == "'" {
                        // oslo makes a bare quoted string a token no rule reduces: the whole rule fails.
                        throw PolicyParseError("a quoted string \(core) is not a check (write 'value':%(attribute)s)")
                    }
                    tokens.append(.check(String(core)))
                }
            }
            tokens += Array(repeating: .rparen, count: trailing)
        }
        return tokens
    }

    private static func parseOr(_ tokens: [Token], _ position: inout Int) throws(PolicyParseError) -> PolicyRule {
        var alternatives = [try parseAnd(tokens, &position)]
        while position < tokens.count, tokens[position] == .or {
            position += 1
            alternatives.append(try parseAnd(tokens, &position))
        }
        return alternatives.count == 1 ? alternatives[0] : .or(alternatives)
    }

    private static func parseAnd(_ tokens: [Token], _ position: inout Int) throws(PolicyParseError) -> PolicyRule {
        var terms = [try parseUnary(tokens, &position)]
        while position < tokens.count, tokens[position] == .and {
            position += 1
            terms.append(try parseUnary(tokens, &position))
        }
        return terms.count == 1 ? terms[0] : .and(terms)
    }

    private static func parseUnary(_ tokens: [Token], _ position: inout Int) throws(PolicyParseError) -> PolicyRule {
        guard position < tokens.count else { throw PolicyParseError("the rule ends where a check was expected") }
        let token = tokens[position]
        position += 1
        switch token {
        case .not:
            return .not(try parseUnary(tokens, &position))
        case .lparen:
            let inner = try parseOr(tokens, &position)
            guard position < tokens.count, tokens[position] == .rparen else {
                throw PolicyParseError("a '(' is not closed")
            }
            position += 1
            return inner
        case .check(let text):
            return try parseCheck(text)
        case .rparen, .and, .or:
            throw PolicyParseError("unexpected \(describe(token)) where a check was expected")
        }
    }

    /// One check: `@`, `!`, or `kind:match` split at the first colon.
    static func parseCheck(_ text: String) throws(PolicyParseError) -> PolicyRule {
        if text == "@" { return .allow }
        if text == "!" { return .deny }
        guard let colon = text.firstIndex(of: ":") else {
            throw PolicyParseError("'\(text)' is not a check: expected kind:match (role:admin, rule:name, project_id:%(project_id)s), @ or !")
        }
        let kind = String(text[..<colon])
        let match = String(text[text.index(after: colon)...])
        switch kind {
        case "rule":
            guard !match.isEmpty else { throw PolicyParseError("'\(text)' names no rule") }
            return .rule(match)
        case "role":
            return .role(try MatchTemplate(match))
        case "http", "https":
            throw PolicyParseError("'\(text)': remote HTTP checks are not supported")
        default:
            guard !kind.isEmpty else { throw PolicyParseError("'\(text)' has nothing before the ':'") }
            if let literal = try literalValue(kind) { return .literal(literal, match: try MatchTemplate(match)) }
            guard kind.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-" }) else {
                throw PolicyParseError("'\(kind)' in '\(text)' is neither a credential name nor a Python literal")
            }
            return .credential(path: kind.split(separator: ".").map(String.init), match: try MatchTemplate(match))
        }
    }

    /// The `str()` of a Python literal kind (`'community'`, `True`, `None`, `1`), or nil for a name.
    static func literalValue(_ kind: String) throws(PolicyParseError) -> String? {
        if let first = kind.first, first == "'" || first == "\"" {
            guard kind.count >= 2, kind.last == first else { throw PolicyParseError("unterminated string \(kind)") }
            return String(kind.dropFirst().dropLast())
        }
        if kind == "True" || kind == "False" || kind == "None" { return kind }
        if let first = kind.first, first.isNumber || first == "-" {
            if let int = Int(kind) { return String(int) }
            if let double = Double(kind) { return String(double) }
            throw PolicyParseError("'\(kind)' is not a number")
        }
        return nil
    }

    private static func describe(_ token: Token) -> String {
        switch token {
        case .lparen: "'('"
        case .rparen: "')'"
        case .and: "'and'"
        case .or: "'or'"
        case .not: "'not'"
        case .check(let text): "'\(text)'"
        }
    }
}
