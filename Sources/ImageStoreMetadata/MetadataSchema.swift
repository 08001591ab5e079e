import Foundation
import GRDB
import ImageStoreCore

/// The metadata schema, as versioned migrations. GRDB records each applied migration in
/// `grdb_migrations`, so running the migrator at every start-up applies only what is new.
/// Never edit a shipped migration: add the next one.
enum MetadataSchema {
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-images") { db in
            // STRICT: SQLite refuses a value of the wrong type instead of storing it silently.
            // Dates are REAL unix seconds (see `StoredDate`); booleans are 0/1.
            try db.execute(
                sql: """
                    CREATE TABLE images (
                        id TEXT NOT NULL PRIMARY KEY,
                        name TEXT,
                        status TEXT NOT NULL,
                        visibility TEXT NOT NULL,
                        protected INTEGER NOT NULL DEFAULT 0,
                        os_hidden INTEGER NOT NULL DEFAULT 0,
                        checksum TEXT,
                        os_hash_algo TEXT,
                        os_hash_value TEXT,
                        size INTEGER,
                        virtual_size INTEGER,
                        disk_format TEXT,
                        container_format TEXT,
                        min_disk INTEGER NOT NULL DEFAULT 0,
                        min_ram INTEGER NOT NULL DEFAULT 0,
                        owner TEXT,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        upload_owner TEXT
                    ) STRICT;

                    CREATE TABLE image_tags (
                        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                        tag TEXT NOT NULL,
                        PRIMARY KEY (image_id, tag)
                    ) STRICT, WITHOUT ROWID;

                    CREATE TABLE image_properties (
                        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                        name TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (image_id, name)
                    ) STRICT, WITHOUT ROWID;

                    -- One index per list sort key, each ending in id: the list's ORDER BY (key, id) and its
                    -- keyset condition then walk an index and stop after `limit` rows, instead of sorting.
                    CREATE INDEX images_by_created_at ON images(created_at, id);
                    CREATE INDEX images_by_updated_at ON images(updated_at, id);
                    CREATE INDEX images_by_name ON images(name, id);
                    CREATE INDEX images_by_status ON images(status, id);
                    CREATE INDEX images_by_owner ON images(owner, id);
                    CREATE INDEX images_by_size ON images(size, id);
                    CREATE INDEX images_by_visibility ON images(visibility, id);
                    CREATE INDEX images_by_disk_format ON images(disk_format, id);
                    CREATE INDEX images_by_container_format ON images(container_format, id);
                    CREATE INDEX images_by_min_disk ON images(min_disk, id);
                    CREATE INDEX images_by_min_ram ON images(min_ram, id);
                    -- The tag filter's lookups go through the primary key; this serves "which images have tag X".
                    CREATE INDEX image_tags_by_tag ON image_tags(tag);
                    """)
        }
        migrator.registerMigration("v2-image-members") { db in
            // One row per (image, project) it is shared with; gone with the image.
            try db.execute(
                sql: """
                    CREATE TABLE image_members (
                        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                        member_id TEXT NOT NULL,
                        status TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        PRIMARY KEY (image_id, member_id)
                    ) STRICT, WITHOUT ROWID;

                    -- The list's "shared with my project" condition looks memberships up by project.
                    CREATE INDEX image_members_by_member ON image_members(member_id, status, image_id);
                    """)
        }
        migrator.registerMigration("v3-metadefs") { db in
            // Glance's metadata definitions catalogue. Objects, properties and tags share one table: each is
            // a name and the JSON definition the API validated. Children follow their namespace's renames
            // and deletes (ON UPDATE/DELETE CASCADE). Resource types are seeded as Glance's schema did, so
            // the list is never empty.
            try db.execute(
                sql: """
                    CREATE TABLE metadef_namespaces (
                        namespace TEXT NOT NULL PRIMARY KEY,
                        display_name TEXT,
                        description TEXT,
                        visibility TEXT NOT NULL,
                        protected INTEGER NOT NULL DEFAULT 0,
                        owner TEXT,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL
                    ) STRICT;

                    CREATE TABLE metadef_items (
                        namespace TEXT NOT NULL REFERENCES metadef_namespaces(namespace) ON DELETE CASCADE ON UPDATE CASCADE,
                        kind TEXT NOT NULL,
                        name TEXT NOT NULL,
                        document TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        PRIMARY KEY (namespace, kind, name)
                    ) STRICT, WITHOUT ROWID;

                    CREATE TABLE metadef_resource_types (
                        name TEXT NOT NULL PRIMARY KEY,
                        protected INTEGER NOT NULL DEFAULT 0,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL
                    ) STRICT;

                    CREATE TABLE metadef_associations (
                        namespace TEXT NOT NULL REFERENCES metadef_namespaces(namespace) ON DELETE CASCADE ON UPDATE CASCADE,
                        resource_type TEXT NOT NULL REFERENCES metadef_resource_types(name),
                        prefix TEXT,
                        properties_target TEXT,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        PRIMARY KEY (namespace, resource_type)
                    ) STRICT, WITHOUT ROWID;
                    """)
            let now = Date().timeIntervalSince1970
            for name in MetadefResourceType.seeded {
                try db.execute(
                    sql: "INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) VALUES (?, 1, ?, ?)",
                    arguments: [name, now, now])
            }
        }
        migrator.registerMigration("v4-tasks") { db in
            // Glance's tasks: input and result are JSON texts; image_id is not a foreign key, since a task
            // outlives the image it made or failed to make.
            try db.execute(
                sql: """
                    CREATE TABLE tasks (
                        id TEXT NOT NULL PRIMARY KEY,
                        type TEXT NOT NULL,
                        status TEXT NOT NULL,
                        input TEXT NOT NULL,
                        result TEXT,
                        message TEXT NOT NULL DEFAULT '',
                        owner TEXT,
                        image_id TEXT,
                        user_id TEXT,
                        request_id TEXT,
                        expires_at REAL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL
                    ) STRICT;

                    CREATE INDEX tasks_by_owner ON tasks(owner, created_at);
                    CREATE INDEX tasks_by_image ON tasks(image_id);
                    """)
        }
        migrator.registerMigration("v5-store-identity") { db in
            // The store id read from each backend's marker at its first writable check: a share whose
            // marker carries another id is a different share (writes refused, see MountGuard).
            try db.execute(
                sql: """
                    CREATE TABLE store_identity (
                        store TEXT NOT NULL PRIMARY KEY,
                        marker_id TEXT NOT NULL,
                        recorded_at REAL NOT NULL
                    ) STRICT;
                    """)
        }
        migrator.registerMigration("v6-replicas") { db in
            // The serving processes and their heartbeats (leases); an image being written names its
            // replica in images.upload_owner. The index finds a dead replica's images without a scan.
            try db.execute(
                sql: """
                    CREATE TABLE replicas (
                        id TEXT NOT NULL PRIMARY KEY,
                        host TEXT NOT NULL,
                        started_at REAL NOT NULL,
                        heartbeat_at REAL NOT NULL
                    ) STRICT;

                    CREATE INDEX images_by_upload_owner ON images(upload_owner) WHERE upload_owner IS NOT NULL;
                    """)
        }
        migrator.registerMigration("v7-owner-pages") { db in
            // A project's own images in the default order (the `owner` filter, Horizon's project tab). Without
            // it SQLite seeks images_by_owner and sorts all the owner's images before LIMIT: 80 ms a page for
            // an owner of 20k images. images_by_owner stays for sort_key=owner.
            try db.execute(sql: "CREATE INDEX images_by_owner_created_at ON images(owner, created_at, id)")
        }
        return migrator
    }()
}
