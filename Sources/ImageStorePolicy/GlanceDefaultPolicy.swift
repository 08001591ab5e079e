/// Glance's default policy: the secure-RBAC rules of `glance/policies/*.py` (project-scoped admin,
/// member and reader personas), rule for rule and name for name, so a Glance policy file that
/// overrides some of them means the same here. Written from Glance's rules, not copied.
public enum GlanceDefaultPolicy {
    // The composite check strings Glance builds its rules from (glance/policies/base.py).
    static let projectMember = "role:member and project_id:%(project_id)s"
    static let projectReader = "role:reader and project_id:%(project_id)s"
    static let imageMember = "project_id:%(member_id)s"
    static let community = "'community':%(visibility)s"
    static let publicVisibility = "'public':%(visibility)s"
    static let shared = "'shared':%(visibility)s"
    static let admin = "rule:context_is_admin"
    static let `default` = "rule:default"
    static let service = "rule:service_api"

    static let adminOrProjectMember = "\(admin) or (\(projectMember))"
    static let adminOrProjectReader = "\(admin) or (\(projectReader))"
    static let adminOrProjectReaderGetImage =
        "\(admin) or (role:reader and (project_id:%(project_id)s or \(imageMember) or \(community) or \(publicVisibility) or \(shared)))"
    static let adminOrProjectMemberDownloadImage =
        "\(admin) or (role:member and (project_id:%(project_id)s or \(imageMember) or \(community) or \(publicVisibility) or \(shared)))"
    static let adminOrProjectMemberCreateImage = "\(admin) or (\(projectMember) and project_id:%(owner)s)"
    static let adminOrProjectReaderGetNamespace =
        "\(admin) or (role:reader and (project_id:%(project_id)s or \(publicVisibility)))"
    static let adminOrSharedMember = "\(admin) or (role:member and \(imageMember))"
    // Glance writes this one without parentheses around the second half; `and` binds tighter anyway.
    static let adminOrProjectReaderOrSharedMember =
        "\(admin) or role:reader and (project_id:%(project_id)s or \(imageMember))"
    static let serviceOrProjectMember = "\(service) or (\(projectMember) and project_id:%(owner)s)"
    static let adminOrService = "\(admin) or \(service)"
    static let metadefAdmin = "rule:metadef_admin"

    /// Every rule Glance registers, in Glance's order: name and default check string.
    public static let rules: [(name: String, check: String)] = [
        // base
        ("default", ""),
        ("context_is_admin", "role:admin"),
        ("service_api", "role:service or role:admin"),
        // images
        ("add_image", adminOrProjectMemberCreateImage),
        ("delete_image", adminOrProjectMember),
        ("get_image", adminOrProjectReaderGetImage),
        ("get_images", adminOrProjectReader),
        ("modify_image", adminOrProjectMember),
        ("publicize_image", admin),
        ("communitize_image", adminOrProjectMember),
        ("download_image", adminOrProjectMemberDownloadImage),
        ("download_from_store", adminOrProjectMemberDownloadImage),
        ("upload_image", adminOrProjectMember),
        ("delete_image_location", admin),
        ("get_image_location", adminOrProjectReader),
        ("set_image_location", adminOrProjectMember),
        ("add_image_location", serviceOrProjectMember),
        ("fetch_image_location", service),
        ("add_member", adminOrProjectMember),
        ("delete_member", adminOrProjectMember),
        ("get_member", adminOrProjectReaderOrSharedMember),
        ("get_members", adminOrProjectReaderOrSharedMember),
        ("modify_member", adminOrSharedMember),
        ("manage_image_cache", admin),
        ("deactivate", adminOrProjectMember),
        ("reactivate", adminOrProjectMember),
        ("copy_image", admin),
        ("list_cached_nodes", admin),
        // tasks
        ("get_task", `default`),
        ("get_tasks", `default`),
        ("add_task", `default`),
        ("modify_task", `default`),
        ("tasks_api_access", admin),
        // discovery
        ("stores_info_detail", adminOrService),
        // cache
        ("cache_image", admin),
        ("cache_list", admin),
        ("cache_delete", admin),
        ("cache_clean", admin),
        ("cache_prune", admin),
        // metadata definitions
        ("metadef_default", ""),
        ("metadef_admin", admin),
        ("get_metadef_namespace", adminOrProjectReaderGetNamespace),
        ("get_metadef_namespaces", adminOrProjectReader),
        ("modify_metadef_namespace", metadefAdmin),
        ("add_metadef_namespace", metadefAdmin),
        ("delete_metadef_namespace", metadefAdmin),
        ("get_metadef_object", adminOrProjectReaderGetNamespace),
        ("get_metadef_objects", adminOrProjectReaderGetNamespace),
        ("modify_metadef_object", metadefAdmin),
        ("add_metadef_object", metadefAdmin),
        ("delete_metadef_object", metadefAdmin),
        ("list_metadef_resource_types", adminOrProjectReaderGetNamespace),
        ("get_metadef_resource_type", adminOrProjectReaderGetNamespace),
        ("add_metadef_resource_type_association", metadefAdmin),
        ("remove_metadef_resource_type_association", metadefAdmin),
        ("get_metadef_property", adminOrProjectReaderGetNamespace),
        ("get_metadef_properties", adminOrProjectReaderGetNamespace),
        ("modify_metadef_property", metadefAdmin),
        ("add_metadef_property", metadefAdmin),
        ("remove_metadef_property", metadefAdmin),
        ("get_metadef_tag", adminOrProjectReaderGetNamespace),
        ("get_metadef_tags", adminOrProjectReaderGetNamespace),
        ("modify_metadef_tag", metadefAdmin),
        ("add_metadef_tag", metadefAdmin),
        ("add_metadef_tags", metadefAdmin),
        ("delete_metadef_tag", metadefAdmin),
        ("delete_metadef_tags", metadefAdmin),
    ]
}
