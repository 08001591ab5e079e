import Foundation
import ImageStoreCore
import Yams

/// A policy that cannot be used: the file is unreadable or not a mapping of rule names to check
/// strings, a rule does not parse, refers to a rule that does not exist, or refers to itself.
/// Start-up stops with it; the message names the file and the rule.
public struct PolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String?
    public var rule: String?
    public var reason: String

    public init(path: String?, rule: String?, reason: String) {
        self.path = path
        self.rule = rule
        self.reason = reason
    }

    public var description: String {
        var text = "policy"
        if let path { text += " file \(path)" }
        if let rule { text += ": rule \"\(rule)\"" }
        return text + ": " + reason
    }
}

/// Glance's policy: its default rules, with single rules replaced by an oslo.policy-style policy file
/// (`[oslo_policy] policy_file`, YAML or JSON: `"rule_name": "check string"`). Every rule is parsed
/// and checked when the enforcer is made, so a bad rule is a start-up error, never a silent deny.
///
/// ```swift
/// let policy = try PolicyEnforcer.load(policyFile: "/etc/imagestore/policy.yaml")
/// let allowed = try policy.allows("publicize_image", identity: identity, target: .image(image, callerProject: identity.projectID))
/// ```
public struct PolicyEnforcer: Sendable {
    let rules: [String: PolicyRule]
    /// The rules Glance defines (the actions code may ask about).
    public let registeredNames: Set<String>
    /// Rules the policy file changed, and rules it added that Glance does not define (usable with `rule:`).
    public let overridden: [String]
    public let added: [String]
    /// Rules are evaluated only for project-scoped callers when true (`[oslo_policy] enforce_scope`, as
    /// every Glance rule has `scope_types = ['project']`): a system- or domain-scoped token is refused.
    public let enforceScope: Bool

    /// Glance's defaults with no file.
    public static let glanceDefaults: PolicyEnforcer = {
        do { return try PolicyEnforcer() } catch { preconditionFailure("Glance's default policy does not parse: \(error)") }
    }()

    /// Glance's defaults with `overrides` (rule name → check string, or oslo's list-of-lists form).
    public init(overrides: [String: PolicyText] = [:], source path: String? = nil, enforceScope: Bool = true) throws(PolicyError) {
        var texts: [String: PolicyText] = [:]
        for (name, check) in GlanceDefaultPolicy.rules { texts[name] = .string(check) }
        let registered = Set(texts.keys)
        var rules: [String: PolicyRule] = [:]
        for (name, text) in texts.merging(overrides, uniquingKeysWith: { _, override in override }) {
            do {
                rules[name] = try text.parse()
            } catch {
                throw PolicyError(path: path, rule: name, reason: "cannot parse \(text): \(error.reason)")
            }
        }
        try Self.checkReferences(rules, path: path)
        self.rules = rules
        self.registeredNames = registered
        self.overridden = overrides.keys.filter(registered.contains).sorted()
        self.added = overrides.keys.filter { !registered.contains($0) }.sorted()
        self.enforceScope = enforceScope
    }

    /// Reads a policy file (YAML; JSON is YAML too) over Glance's defaults. An empty file changes nothing.
    public static func load(policyFile path: String, enforceScope: Bool = true) throws(PolicyError) -> PolicyEnforcer {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PolicyError(path: path, rule: nil, reason: "cannot read the file: \(error.localizedDescription)")
        }
        return try PolicyEnforcer(overrides: try parseFile(text, path: path), source: path, enforceScope: enforceScope)
    }

    /// The file's rules: a mapping of names to check strings (or lists of lists of checks).
    static func parseFile(_ text: String, path: String?) throws(PolicyError) -> [String: PolicyText] {
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw PolicyError(path: path, rule: nil, reason: "not valid YAML or JSON: \(error)")
        }
        guard let document else { return [:] }
        guard let mapping = document as? [String: Any] else {
            throw PolicyError(path: path, rule: nil, reason: "the file must be a mapping of rule names to check strings")
        }
        var result: [String: PolicyText] = [:]
        for (name, value) in mapping {
            if let check = value as? String {
                result[name] = .string(check)
            } else if let outer = value as? [Any], let lists = listForm(outer) {
                result[name] = .list(lists)
            } else {
                throw PolicyError(path: path, rule: name, reason: "the value must be a check string (e.g. \"role:admin\")")
            }
        }
        return result
    }

    /// oslo's list form: each item a list of check strings (or a bare check string); nil otherwise.
    private static func listForm(_ outer: [Any]) -> [[String]]? {
        var lists: [[String]] = []
        for inner in outer {
            if let check = inner as? String {
                lists.append([check])
                continue
            }
            guard let items = inner as? [Any] else { return nil }
            let checks = items.compactMap { $0 as? String }
            guard checks.count == items.count else { return nil }
            lists.append(checks)
        }
        return lists
    }

    /// Every `rule:name` must name a rule, and no rule may depend on itself (oslo's check_rules).
    private static func checkReferences(_ rules: [String: PolicyRule], path: String?) throws(PolicyError) {
        for name in rules.keys.sorted() {
            for reference in rules[name]!.references where rules[reference] == nil {
                throw PolicyError(path: path, rule: name, reason: "refers to rule \"\(reference)\", which is not defined")
            }
        }
        // Depth-first search for a cycle, reporting the first rule (by name) on one.
        var state: [String: Bool] = [:]  // false: on the current path, true: done
        func visit(_ name: String, _ trail: [String]) throws(PolicyError) {
            if let done = state[name] {
                if done { return }
                let cycle = trail[trail.firstIndex(of: name)!...] + [name]
                throw PolicyError(path: path, rule: cycle.first, reason: "rules refer to each other in a cycle: \(cycle.joined(separator: " -> "))")
            }
            state[name] = false
            for reference in rules[name]!.references { try visit(reference, trail + [name]) }
            state[name] = true
        }
        for name in rules.keys.sorted() { try visit(name, []) }
    }

    /// Whether `action` is allowed for `identity` on `target`.
    /// - Throws: `PolicyError` when `action` is not a rule (a programming error: Glance answers 500 too).
    public func allows(_ action: String, identity: RequestIdentity, target: PolicyTarget) throws(PolicyError) -> Bool {
        guard let rule = rules[action] else {
            throw PolicyError(path: nil, rule: action, reason: "no such policy rule is registered")
        }
        if enforceScope && !identity.isProjectScoped { return false }
        return rule.evaluate(target, identity.credentials, rules: rules)
    }

    /// Glance's `check_is_admin`: the `context_is_admin` rule against the caller's own credentials.
    public func isAdmin(_ identity: RequestIdentity) -> Bool {
        guard let rule = rules["context_is_admin"] else { return false }
        let credentials = identity.credentials
        return rule.evaluate(.credentials(credentials), credentials, rules: rules)
    }

    /// The check string a rule has now (for logs and tests).
    public func checkString(_ name: String) -> String? { rules[name]?.description }
}

/// One rule's text in a policy file.
public enum PolicyText: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    /// oslo's old JSON form: the outer list is `or`, each inner list `and`.
    case list([[String]])

    func parse() throws(PolicyParseError) -> PolicyRule {
        switch self {
        case .string(let text): try PolicyParser.parse(text)
        case .list(let lists): try PolicyParser.parse(list: lists)
        }
    }

    public var description: String {
        switch self {
        case .string(let text): "\"\(text)\""
        case .list(let lists): "\(lists)"
        }
    }
}

extension RequestIdentity {
    /// Glance's rules are all `scope_types = ['project']`: a system- or domain-scoped Keystone token
    /// is not project-scoped. Noauth callers and project tokens are.
    public var isProjectScoped: Bool { systemScope == nil && (domainID == nil || projectID != nil) }
}
