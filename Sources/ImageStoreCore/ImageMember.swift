import Foundation

/// Where a project stands with an image shared with it (Glance's image member status).
public enum MemberStatus: String, Sendable, CaseIterable, Codable {
    case pending, accepted, rejected
}

/// One project an image is shared with. Only `shared` images have members; the owner adds and
/// removes them, the member accepts or rejects.
public struct ImageMember: Sendable, Equatable, Codable {
    public var imageID: ImageID
    /// The project (Keystone project id) the image is shared with.
    public var memberID: String
    public var status: MemberStatus
    public var createdAt: Date
    public var updatedAt: Date

    public init(imageID: ImageID, memberID: String, status: MemberStatus = .pending, createdAt: Date = Date(), updatedAt: Date? = nil) {
        self.imageID = imageID
        self.memberID = memberID
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// Who is listing images, for Glance's visibility rules (its `_select_images_query`): an admin sees
/// every image; anyone else sees public and community images, their project's own, and `shared`
/// images their project is a member of with `memberStatus`.
public struct ImageViewer: Sendable, Equatable {
    /// The caller's project; nil for a caller without one (it then owns nothing and is member of nothing).
    public var project: String?
    public var isAdmin: Bool
    /// Shared images are listed when the caller's membership has this status; nil means any status
    /// (`member_status=all`). Glance's default is `accepted`.
    public var memberStatus: MemberStatus?
    /// Glance lists other projects' community images only when a `visibility` filter is given; without
    /// one, community images appear only to their owner.
    public var includesOthersCommunity: Bool

    public init(project: String?, isAdmin: Bool, memberStatus: MemberStatus? = .accepted, includesOthersCommunity: Bool = false) {
        self.project = project
        self.isAdmin = isAdmin
        self.memberStatus = memberStatus
        self.includesOthersCommunity = includesOthersCommunity
    }

    /// Whether the viewer owns `image` (a nil project owns nothing, not even images without owner).
    public func owns(_ image: Image) -> Bool { project != nil && image.owner == project }

    /// Whether `image` is in this viewer's listing, given the image's members.
    public func lists(_ image: Image, members: [ImageMember]) -> Bool {
        if !includesOthersCommunity && image.visibility == .community && !owns(image) { return false }
        if isAdmin { return true }
        switch image.visibility {
        case .public, .community: return true
        case .private: return owns(image)
        case .shared:
            if owns(image) { return true }
            guard let project else { return false }
            return members.contains { $0.memberID == project && (memberStatus == nil || $0.status == memberStatus) }
        }
    }
}

extension Image {
    /// Glance's `is_image_visible`, for GET and every action on one image: admins see everything, and
    /// so does everyone an image without owner; public and community images are visible to all; the
    /// owner's project sees its images; a `shared` image is visible to a project with a membership in
    /// any status (pending included, so the member can accept it). Anything else is 404 to the caller.
    public func isVisible(toProject project: String?, isAdmin: Bool, membership: ImageMember?) -> Bool {
        if isAdmin || owner == nil { return true }
        switch visibility {
        case .public, .community: return true
        case .private, .shared:
            guard let project else { return false }
            if owner == project { return true }
            return visibility == .shared && membership?.memberID == project && membership?.imageID == id
        }
    }
}
