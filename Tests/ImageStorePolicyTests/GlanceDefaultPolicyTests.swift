import Foundation
import ImageStoreCore
import Testing

@testable import ImageStorePolicy

/// Glance's default rules × the personas of its secure-RBAC model, on images of every visibility:
/// the table Glance's own documentation describes (admin anything; member writes in its project;
/// reader reads; another project's member only what is shared with it, public or community).
@Suite struct GlanceDefaultPolicyTests {
    enum Persona: String, CaseIterable, CustomTestStringConvertible {
        case admin, member, reader, otherMember
        var testDescription: String { rawValue }

        var identity: RequestIdentity {
            switch self {
            case .admin: RequestIdentity(userID: "admin", projectID: "A", roles: ["admin"], isAdmin: true)
            case .member: RequestIdentity(userID: "m", projectID: "A", roles: ["member", "reader"])
            case .reader: RequestIdentity(userID: "r", projectID: "A", roles: ["reader"])
            case .otherMember: RequestIdentity(userID: "o", projectID: "B", roles: ["member", "reader"])
            }
        }
    }

    static let imageRules = [
        "get_image", "modify_image", "delete_image", "upload_image", "download_image", "publicize_image",
        "communitize_image", "deactivate", "reactivate", "add_member", "delete_member", "get_member", "get_members",
        "modify_member",
    ]

    /// Who may do what on an image owned by project A, by its visibility (for `otherMember`, a shared
    /// image is one shared with project B).
    static func expected(_ rule: String, _ persona: Persona, _ visibility: ImageVisibility) -> Bool {
        switch persona {
        case .admin: return true
        case .member:
            return !["publicize_image", "modify_member"].contains(rule)
        case .reader:
            return ["get_image", "get_member", "get_members"].contains(rule)
        case .otherMember:
            switch rule {
            case "get_image", "download_image": return visibility != .private
            case "get_member", "get_members", "modify_member": return visibility == .shared
            default: return false
            }
        }
    }

    @Test(arguments: Persona.allCases, ImageVisibility.allCases)
    func imageRules_matchGlanceDefaults(persona: Persona, visibility: ImageVisibility) throws {
        let image = Image(visibility: visibility, owner: "A")
        let identity = persona.identity
        let target = PolicyTarget.image(image, callerProject: identity.projectID)
        for rule in Self.imageRules {
            let allowed = try PolicyEnforcer.glanceDefaults.allows(rule, identity: identity, target: target)
            #expect(allowed == Self.expected(rule, persona, visibility), "\(rule) for \(persona) on a \(visibility) image")
        }
    }

    @Test(arguments: Persona.allCases)
    func addImage_onlyForOwnProjectUnlessAdmin(persona: Persona) throws {
        let policy = PolicyEnforcer.glanceDefaults
        let identity = persona.identity
        let own = try policy.allows("add_image", identity: identity, target: .newImage(owner: identity.projectID, visibility: nil))
        let other = try policy.allows("add_image", identity: identity, target: .newImage(owner: "C", visibility: nil))
        #expect(own == (persona == .admin || persona == .member || persona == .otherMember))
        #expect(other == (persona == .admin))
        let list = try policy.allows("get_images", identity: identity, target: .project(identity.projectID))
        #expect(list)
    }

    @Test func adminOnlyRules_deniedToProjectMembers() throws {
        let policy = PolicyEnforcer.glanceDefaults
        for rule in ["stores_info_detail", "tasks_api_access", "add_metadef_namespace", "modify_metadef_object", "manage_image_cache", "copy_image"] {
            #expect(try policy.allows(rule, identity: Persona.admin.identity, target: .project("A")), "\(rule)")
            #expect(try !policy.allows(rule, identity: Persona.member.identity, target: .project("A")), "\(rule)")
        }
        // The service role reaches the service API rules.
        let service = RequestIdentity(projectID: "service", roles: ["service"])
        #expect(try policy.allows("stores_info_detail", identity: service, target: .project("service")))
    }

    @Test func everyDefaultRule_parses_andNamesAreUnique() {
        let names = GlanceDefaultPolicy.rules.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(PolicyEnforcer.glanceDefaults.registeredNames == Set(names))
        for name in names { #expect(PolicyEnforcer.glanceDefaults.checkString(name) != nil) }
    }
}
