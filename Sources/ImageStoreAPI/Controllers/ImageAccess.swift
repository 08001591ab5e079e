import Foundation
import ImageStoreCore
import ImageStorePolicy

/// The two gates in front of every route about one image, as Glance has them:
///
/// 1. visibility (Glance's database layer, `is_image_visible`): an image the caller may not see is
///    404, exactly like one that does not exist;
/// 2. policy (`ImageAPIPolicy._enforce`): a denied action is 403 — unless the caller could not even
///    `get_image` it, then 404 again, so nothing reveals that the image exists.
struct ImageAccess: Sendable {
    let repository: any ImageRepository

    /// The image, if the caller may see it (visibility and `get_image`); 404 otherwise.
    func visibleImage(_ id: ImageID, _ context: AppRequestContext) async throws -> Image {
        guard let image = try await repository.get(id), try await isVisible(image, context),
            try context.allows("get_image", target(image, context))
        else { throw Self.notFound(id) }
        return image
    }

    /// Enforces `action` (a Glance rule name) on an image the caller can see: 403 when denied.
    func authorize(_ action: String, on image: Image, _ context: AppRequestContext) throws {
        let policyTarget = target(image, context)
        guard try !context.allows(action, policyTarget) else { return }
        if try action == "get_image" || !context.allows("get_image", policyTarget) { throw Self.notFound(image.id) }
        throw ImageStoreError.forbidden("You are not authorized to complete \(action) action.")
    }

    /// The visible image, with `action` enforced on it: the usual first line of an image handler.
    func image(_ id: ImageID, for action: String, _ context: AppRequestContext) async throws -> Image {
        let image = try await visibleImage(id, context)
        try authorize(action, on: image, context)
        return image
    }

    /// Whether a listed image passes `get_image` (the list already applied visibility in the repository).
    func mayShow(_ image: Image, _ context: AppRequestContext) throws -> Bool {
        try context.allows("get_image", target(image, context))
    }

    func target(_ image: Image, _ context: AppRequestContext) -> PolicyTarget {
        .image(image, callerProject: context.projectID)
    }

    private func isVisible(_ image: Image, _ context: AppRequestContext) async throws -> Bool {
        let project = context.projectID
        // Only a shared image of another project needs the membership looked up.
        var membership: ImageMember?
        if !context.isAdmin, image.visibility == .shared, let project, image.owner != nil, image.owner != project {
            membership = try await repository.member(project, of: image.id)
        }
        return image.isVisible(toProject: project, isAdmin: context.isAdmin, membership: membership)
    }

    static func notFound(_ id: ImageID) -> ImageStoreError { .notFound("No image found with ID \(id)") }
}
