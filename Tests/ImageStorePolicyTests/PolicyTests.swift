import Foundation
import ImageStoreCore
import ImageStoreTestSupport
import Testing

@testable import ImageStorePolicy

/// The check-string language: the trees oslo.policy builds, and where it would fail closed, an error.
@Suite struct PolicyParserTests {
    @Test(arguments: [
        ("role:a or role:b and role:c", "(role:a or (role:b and role:c))"),
        ("role:a and role:b or role:c", "((role:a and role:b) or role:c)"),
        ("not role:a and role:b", "(not role:a and role:b)"),
        ("not (role:a or role:b)", "not (role:a or role:b)"),
        ("(role:a or role:b) and role:c", "((role:a or role:b) and role:c)"),
        ("((role:a))", "role:a"),
        ("role:a AND role:b Or NOT role:c", "((role:a and role:b) or not role:c)"),
        ("  role:a   and\trole:b ", "(role:a and role:b)"),
        ("", "@"),
        ("@", "@"),
        ("!", "!"),
        (
            "rule:context_is_admin or (role:member and project_id:%(project_id)s)",
            "(rule:context_is_admin or (role:member and project_id:%(project_id)s))"
        ),
        ("'public':%(visibility)s", "'public':%(visibility)s"),
        ("is_admin:True", "is_admin:True"),
        ("True:%(enabled)s", "'True':%(enabled)s"),
    ])
    func parse_buildsOsloTree(text: String, tree: String) throws {
        #expect(try PolicyParser.parse(text).description == tree)
    }

    @Test(arguments: [
        ("role:a and", "ends where a check was expected"),
        ("(role:a or role:b", "not closed"),
        ("role:a)", "unexpected ')'"),
        ("and role:a", "unexpected 'and'"),
        ("admin", "is not a check"),
        ("'admin'", "quoted string"),
        ("role:a role:b", "unexpected 'role:b'"),
        ("project_id:%(project_id)d", "only %(name)s"),
        ("project_id:%s", "must start %(name)s"),
        ("http:https://example.com", "remote HTTP checks"),
        ("rule:", "names no rule"),
        (":x", "nothing before"),
        ("   ", "only whitespace"),
        ("'abc:%(x)s", "unterminated"),
    ])
    func parse_rejectsWhatOsloWouldFailClosed(text: String, message: String) {
        let error = #expect(throws: PolicyParseError.self) { try PolicyParser.parse(text) }
        #expect(error?.reason.contains(message) == true, "\(String(describing: error))")
    }

    @Test func parseList_isOrOfAnds() throws {
        #expect(try PolicyParser.parse(list: [["role:a", "role:b"], ["role:c"]]).description == "((role:a and role:b) or role:c)")
        #expect(try PolicyParser.parse(list: []) == .allow)
        #expect(try PolicyParser.parse(list: [[]]) == .deny)
    }
}

@Suite struct PolicyEvaluationTests {
    func allows(_ check: String, _ identity: RequestIdentity, _ target: PolicyTarget = [:]) throws -> Bool {
        let policy = try PolicyEnforcer(overrides: ["probe": .string(check)], enforceScope: false)
        return try policy.allows("probe", identity: identity, target: target)
    }

    let member = RequestIdentity(userID: "u1", projectID: "p1", roles: ["Member", "reader"])

    @Test func role_isCaseInsensitive_andMayReadTheTarget() throws {
        #expect(try allows("role:member", member))
        #expect(try allows("role:MEMBER", member))
        #expect(try !allows("role:admin", member))
        #expect(try allows("role:%(wanted)s", member, ["wanted": "reader"]))
        #expect(try !allows("role:%(missing)s", member))
    }

    @Test func credentialCheck_comparesWithTheRenderedTarget() throws {
        #expect(try allows("project_id:%(project_id)s", member, ["project_id": "p1"]))
        #expect(try !allows("project_id:%(project_id)s", member, ["project_id": "p2"]))
        #expect(try !allows("project_id:%(project_id)s", member, [:]))  // a missing key is false, not an error
        #expect(try allows("user_id:u1", member))
        #expect(try allows("project_id:pre-%(suffix)s", RequestIdentity(projectID: "pre-x"), ["suffix": "x"]))
        #expect(try allows("project_id:100%%", RequestIdentity(projectID: "100%")))
        #expect(try !allows("no_such_credential:x", member))
    }

    @Test func pythonValues_renderAsPythonWould() throws {
        // None == None: oslo compares str() values, so a project-less caller matches a None target value.
        #expect(try allows("project_id:%(member_id)s", RequestIdentity(), PolicyTarget(["member_id": nil])))
        #expect(try !allows("project_id:%(member_id)s", member, PolicyTarget(["member_id": nil])))
        #expect(try allows("is_admin:True", RequestIdentity(isAdmin: true)))
        #expect(try !allows("is_admin:True", member))
        #expect(try allows("'public':%(visibility)s", member, ["visibility": "public"]))
        #expect(try !allows("'public':%(visibility)s", member, ["visibility": "shared"]))
        #expect(try allows("True:%(protected)s", member, ["protected": "True"]))
        #expect(try allows("1:%(n)s", member, ["n": "1"]))
    }

    @Test func operators_combineAsParsed() throws {
        #expect(try allows("role:admin or role:member and user_id:u1", member))
        #expect(try !allows("(role:admin or role:member) and user_id:u2", member))
        #expect(try allows("not role:admin", member))
        #expect(try allows("@", member))
        #expect(try !allows("!", member))
    }

    @Test func isAdmin_isTheContextIsAdminRule() throws {
        #expect(PolicyEnforcer.glanceDefaults.isAdmin(RequestIdentity(projectID: "p", roles: ["admin"])))
        #expect(!PolicyEnforcer.glanceDefaults.isAdmin(member))
        let custom = try PolicyEnforcer(overrides: ["context_is_admin": .string("role:cloud_admin")])
        #expect(custom.isAdmin(RequestIdentity(roles: ["cloud_admin"])))
        #expect(!custom.isAdmin(RequestIdentity(roles: ["admin"])))
    }

    @Test func scope_refusesSystemAndDomainTokensWhenEnforced() throws {
        let admin = RequestIdentity(roles: ["admin"], isAdmin: true)
        var system = admin
        system.systemScope = "all"
        var domain = admin
        domain.domainID = "default"
        #expect(try PolicyEnforcer.glanceDefaults.allows("get_images", identity: admin, target: .project(nil)))
        #expect(try !PolicyEnforcer.glanceDefaults.allows("get_images", identity: system, target: .project(nil)))
        #expect(try !PolicyEnforcer.glanceDefaults.allows("get_images", identity: domain, target: .project(nil)))
        let unscoped = try PolicyEnforcer(enforceScope: false)
        #expect(try unscoped.allows("get_images", identity: system, target: .project(nil)))
    }

    @Test func noauthIdentity_isAdminWithoutRolesHeader() {
        let policy = PolicyEnforcer.glanceDefaults
        let admin = RequestIdentity.noauth(userID: nil, projectID: "p", roles: nil, isAdmin: policy.isAdmin)
        #expect(admin.isAdmin && admin.roles == ["admin"] && admin.projectID == "p")
        let reader = RequestIdentity.noauth(userID: "u", projectID: "p", roles: " Reader ,,member", isAdmin: policy.isAdmin)
        #expect(!reader.isAdmin && reader.roles == ["reader", "member"] && reader.userID == "u")
        let named = RequestIdentity.noauth(userID: nil, projectID: nil, roles: "admin", isAdmin: policy.isAdmin)
        #expect(named.isAdmin)
    }
}

/// Loading a policy file: overrides win, every problem stops the load and names the rule.
@Suite struct PolicyFileTests {
    func load(_ text: String, name: String = "policy.yaml") throws -> PolicyEnforcer {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.appending(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return try PolicyEnforcer.load(policyFile: path)
    }

    func loadError(_ text: String) -> PolicyError? {
        do {
            _ = try load(text)
            return nil
        } catch {
            return error as? PolicyError
        }
    }

    @Test func yamlOverride_replacesOneRule_andKeepsTheOthers() throws {
        let policy = try load(
            """
            # only admins may create
            "add_image": "role:admin"
            custom_check: "role:auditor"
            "get_images": "rule:custom_check or rule:context_is_admin"
            """)
        let member = RequestIdentity(projectID: "p", roles: ["member", "reader"])
        #expect(try !policy.allows("add_image", identity: member, target: .newImage(owner: "p", visibility: nil)))
        #expect(try !policy.allows("get_images", identity: member, target: .project("p")))
        #expect(try policy.allows("get_images", identity: RequestIdentity(projectID: "p", roles: ["auditor"]), target: .project("p")))
        #expect(try policy.allows("delete_image", identity: member, target: ["project_id": "p"]))  // untouched default
        #expect(policy.overridden == ["add_image", "get_images"])
        #expect(policy.added == ["custom_check"])
    }

    @Test func jsonFile_andOsloListForm_load() throws {
        let policy = try load(#"{"add_image": [["role:member", "project_id:%(owner)s"], ["role:admin"]], "get_images": ""}"#, name: "policy.json")
        #expect(policy.checkString("add_image") == "((role:member and project_id:%(owner)s) or role:admin)")
        #expect(try policy.allows("get_images", identity: RequestIdentity(projectID: "x"), target: .project("x")))
    }

    @Test func emptyFile_isTheDefaults() throws {
        let policy = try load("")
        #expect(policy.overridden.isEmpty)
        #expect(policy.checkString("publicize_image") == "rule:context_is_admin")
    }

    @Test(arguments: [
        (#""add_image": "role:admin and""#, "add_image", "cannot parse"),
        (#""get_image": "rule:nobody_defined_this""#, "get_image", "not defined"),
        ("\"a\": \"rule:b\"\n\"b\": \"rule:a\"", "a", "cycle: a -> b -> a"),
        (#""modify_image": 5"#, "modify_image", "must be a check string"),
        (#""deactivate": "http://policy.example/check""#, "deactivate", "remote HTTP"),
    ])
    func badRule_isAnErrorNamingTheRule(text: String, rule: String, message: String) throws {
        let error = try #require(loadError(text))
        #expect(error.rule == rule)
        #expect(error.description.contains(message), "\(error)")
        #expect(error.description.contains("rule \"\(rule)\""))
    }

    @Test func notAMapping_orNotYAML_orMissingFile_isAnError() throws {
        #expect(loadError("- role:admin")?.description.contains("mapping") == true)
        #expect(loadError("\"a\": [unclosed")?.description.contains("not valid YAML") == true)
        #expect(throws: PolicyError.self) { try PolicyEnforcer.load(policyFile: "/nonexistent/policy.yaml") }
    }

    @Test func unregisteredAction_throws() {
        #expect(throws: PolicyError.self) {
            try PolicyEnforcer.glanceDefaults.allows("no_such_action", identity: RequestIdentity(), target: [:])
        }
    }
}
