import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreConfig
import ImageStoreCore
import ImageStorePolicy

/// `/v2/images/{image_id}/members[/{member_id}]`: sharing an image with other projects, as Glance's
/// `image_members.py`. The owner adds and removes members of a `shared` image; a member accepts or
/// rejects (`pending` → `accepted`/`rejected`), which decides whether the image is in its default list.
struct MembersController {
    let repository: any ImageRepository
    let access: ImageAccess
    let limits: ImageLimits

    func addRoutes(to routes: RouteTable) {
        routes.add(.post, "/v2/images/{image_id}/members", create)
        routes.add(.get, "/v2/images/{image_id}/members", list)
        routes.add(.get, "/v2/images/{image_id}/members/{member_id}", show)
        routes.add(.put, "/v2/images/{image_id}/members/{member_id}", update)
        routes.add(.delete, "/v2/images/{image_id}/members/{member_id}", delete)
    }

    // MARK: Handlers

    @Sendable func create(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let memberID = try Self.memberField(try await JSONBody.read(request, context: context))
        let image = try await sharedImage(context, or: "Not allowed to create members for image")
        try access.authorize("add_member", on: image, context)
        let member = ImageMember(imageID: image.id, memberID: memberID)
        do {
            try await repository.addMember(member, limit: ImageLimits.bounded(limits.members))
        } catch let error as ImageStoreError where error.code == .limitExceeded {
            throw ImageStoreError(.limitExceeded, "Image member limit exceeded for image \(image.id): \(error.message)")
        }
        return .json(Self.json(try await repository.member(memberID, of: image.id) ?? member))
    }

    @Sendable func list(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await sharedImage(context, or: "Not allowed to list members for image")
        try access.authorize("get_members", on: image, context)
        let members = try await repository.members(of: image.id).filter { mayLookUp($0, of: image, context) }
        // Glance then keeps the ones `get_member` allows; the rule's target is the image, so it is one check.
        let shown = try context.allows("get_member", access.target(image, context)) ? members : []
        return .json(["members": .array(shown.map(Self.json)), "schema": "/v2/schemas/members"])
    }

    @Sendable func show(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        // Glance answers 404 for every refusal here, so a membership is never confirmed to outsiders.
        do {
            let image = try await sharedImage(context, or: "Not allowed to show members of image")
            return .json(Self.json(try await lookUp(context, image)))
        } catch let error as ImageStoreError where error.code == .forbidden {
            throw ImageStoreError.notFound(error.message)
        }
    }

    @Sendable func update(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try await JSONBody.read(request, context: context)
        guard let object = body.objectValue else {
            throw ImageStoreError.badRequest(#"Expected a status in the form: {"status": "status"}"#)
        }
        guard let statusValue = object["status"] else { throw ImageStoreError.badRequest("Status not specified") }
        let image = try await sharedImage(context, or: "Not allowed to update members for image")
        let member = try await lookUp(context, image)
        try access.authorize("modify_member", on: image, context)
        guard let text = statusValue.stringValue, let status = MemberStatus(rawValue: text) else {
            throw ImageStoreError.badRequest(#"Incorrect request: Status must be "pending", "accepted" or "rejected"."#)
        }
        return .json(Self.json(try await repository.updateMember(member.memberID, of: image.id, status: status)))
    }

    @Sendable func delete(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await sharedImage(context, or: "Not allowed to delete members for image")
        let member = try await lookUp(context, image)
        try access.authorize("delete_member", on: image, context)
        guard try await repository.removeMember(member.memberID, of: image.id) else { throw Self.notFound(member.memberID, image.id) }
        return Response(status: .noContent)
    }

    // MARK: Helpers

    /// The visible image, which must be `shared` (403 otherwise, with Glance's wording).
    private func sharedImage(_ context: AppRequestContext, or refusal: String) async throws -> Image {
        let image = try await access.visibleImage(try context.imageID(), context)
        guard image.visibility == .shared else {
            throw ImageStoreError.forbidden("\(refusal) \(image.id): Only shared images have members.")
        }
        return image
    }

    /// `{member_id}` of the image as this caller may look it up: `get_member` (403) and Glance's
    /// database rule that a project other than the owner only ever finds its own membership (404).
    private func lookUp(_ context: AppRequestContext, _ image: Image) async throws -> ImageMember {
        let memberID = context.parameters.get("member_id") ?? ""
        guard try context.allows("get_member", access.target(image, context)) else {
            throw ImageStoreError.forbidden("You are not authorized to lookup the members of the image \(image.id).")
        }
        guard let member = try await repository.member(memberID, of: image.id), mayLookUp(member, of: image, context) else {
            throw Self.notFound(memberID, image.id)
        }
        return member
    }

    private func mayLookUp(_ member: ImageMember, of image: Image, _ context: AppRequestContext) -> Bool {
        context.isAdmin || (context.projectID != nil && (image.owner == context.projectID || member.memberID == context.projectID))
    }

    /// `{"member": "<project id>"}`, with Glance's 400s.
    static func memberField(_ body: JSONValue) throws -> String {
        guard let object = body.objectValue else {
            throw ImageStoreError.badRequest(#"Expected a member in the form: {"member": "image_id"}"#)
        }
        guard let value = object["member"] else { throw ImageStoreError.badRequest("Member to be added not specified") }
        guard let text = value.stringValue else {
            throw ImageStoreError.badRequest("Invalid member: \(value.serialized()) is not a project id string")
        }
        guard !text.isEmpty else { throw ImageStoreError.badRequest("Member can't be empty") }
        guard text.count <= 255 else { throw ImageStoreError.badRequest("Member ids are at most 255 characters long") }
        return text
    }

    static func notFound(_ memberID: String, _ image: ImageID) -> ImageStoreError {
        .notFound("\(memberID) not found in the member list of the image \(image).")
    }

    /// Glance's member document.
    static func json(_ member: ImageMember) -> JSONValue {
        [
            "member_id": .string(member.memberID), "image_id": .string(member.imageID.description),
            "status": .string(member.status.rawValue), "created_at": .string(GlanceTime.format(member.createdAt)),
            "updated_at": .string(GlanceTime.format(member.updatedAt)), "schema": "/v2/schemas/member",
        ]
    }
}
