import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Logging
import Testing

/// `imagestore db sync|version|copy` as operators run them: the built binary against a real SQLite file
/// and a real PostgreSQL 15.
@Suite(.serialized) struct DatabaseCommandTests {
    struct Run {
        var exitCode: Int32
        var output: String
    }

    static func imagestore(_ arguments: [String], in directory: TemporaryDirectory) async throws -> Run {
        let out = directory.appending("db-\(UUID().uuidString.prefix(8)).out")
        let process = try ManagedProcess(try CheckCommandTests.executable(), arguments: arguments, stdoutPath: out, stderrPath: out)
        defer { process.killAndWait() }
        let status = try #require(await process.waitForExit(timeout: .seconds(120)), "imagestore \(arguments) did not exit")
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(status & 0x7f == 0, "killed by signal \(status & 0x7f); output:\n\(output)")
        return Run(exitCode: (status >> 8) & 0xff, output: output)
    }

    @Test func syncVersionCopy_movesTheWholeCatalogueFromSQLiteToPostgres() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var logger = Logger(label: "test")
        logger.logLevel = .warning

        // A SQLite catalogue with every kind of row, in several statuses.
        let sqlitePath = directory.appending("catalogue.db")
        let sqlite = try SQLiteImageRepository(path: sqlitePath, logger: logger)
        var images: [Image] = []
        for (index, status) in [ImageStatus.active, .queued, .deactivated, .killed].enumerated() {
            var image = Image(
                name: "image-\(index)", status: status, visibility: index == 0 ? .public : .shared, size: Int64(index * 100),
                owner: "project-\(index % 2)", createdAt: Date(timeIntervalSince1970: 1_700_000_000 + Double(index)))
            image.tags = (0..<index).map { "tag-\($0)" }
            image.properties = ["hw_disk_bus": "scsi", "index": "\(index)"]
            try await sqlite.create(image)
            images.append(try #require(try await sqlite.get(image.id)))
        }
        try await sqlite.addMember(ImageMember(imageID: images[1].id, memberID: "project-9", status: .accepted), limit: nil)
        try await sqlite.addMember(ImageMember(imageID: images[1].id, memberID: "project-8"), limit: nil)
        let sourceMembers = try await sqlite.members(of: images[1].id)
        // Metadefs (a namespace with an object, a property, a tag and two associations, one to a new
        // resource type) and two tasks.
        let metadefs = SQLiteMetadefRepository(sharing: sqlite, logger: logger)
        let namespace = MetadefNamespace(
            namespace: "OS::Copied", displayName: "Copied", visibility: "public", isProtected: true, owner: "project-0",
            createdAt: Date(timeIntervalSince1970: 1_600_000_000.25))
        try await metadefs.createNamespace(
            namespace,
            items: [
                MetadefItem(kind: .object, name: "o", document: #"{"description":"d"}"#), MetadefItem(kind: .property, name: "p"),
                MetadefItem(kind: .tag, name: "t"),
            ],
            associations: [
                MetadefAssociation(resourceType: "OS::Glance::Image", prefix: "hw_"), MetadefAssociation(resourceType: "OS::Custom::Copied"),
            ])
        let tasksSource = SQLiteTaskRepository(sharing: sqlite, logger: logger)
        var sourceTasks: [ImageTask] = []
        for task in [
            ImageTask(type: "api_image_import", status: .success, owner: "project-0", imageID: images[0].id, requestID: "req-a"),
            ImageTask(type: "import", status: .failure, input: #"{"import_from":"x"}"#, message: "no", owner: "project-1"),
        ] {
            try await tasksSource.createTask(task)
            sourceTasks.append(try #require(try await tasksSource.task(task.id)))
        }
        let sourceItems = try await metadefs.items(.object, in: "OS::Copied")
        let sourceAssociations = try await metadefs.associations(in: "OS::Copied")
        try sqlite.close()

        try await SharedPostgresServer.withDatabase { server, url in
            // Fresh database: no version yet.
            var run = try await Self.imagestore(["db", "version", "--connection", url], in: directory)
            #expect(run.exitCode == 1, "\(run.output)")
            #expect(run.output.hasPrefix("none"), "\(run.output)")
            #expect(!run.output.contains(server.password), "the password is never printed")

            run = try await Self.imagestore(["db", "sync", "--connection", url], in: directory)
            #expect(run.exitCode == 0, "\(run.output)")
            #expect(
                run.output.contains("applied: " + PostgresImageRepository.knownMigrations.joined(separator: ", ")), "\(run.output)")
            run = try await Self.imagestore(["db", "sync", "--connection", url], in: directory)
            #expect(run.output.contains("already current"), "\(run.output)")
            run = try await Self.imagestore(["db", "version", "--connection", url], in: directory)
            #expect(run.exitCode == 0, "\(run.output)")
            #expect(run.output.hasPrefix(PostgresImageRepository.knownMigrations.last!), "\(run.output)")

            // The SQLite file reports its own last migration.
            run = try await Self.imagestore(["db", "version", "--connection", "sqlite:///" + sqlitePath], in: directory)
            #expect(run.exitCode == 0, "\(run.output)")
            #expect(run.output.hasPrefix(SQLiteImageRepository.knownMigrations.last!), "\(run.output)")

            run = try await Self.imagestore(["db", "copy", "--from", "sqlite:///" + sqlitePath, "--to", url], in: directory)
            #expect(run.exitCode == 0, "\(run.output)")
            #expect(
                run.output.contains(
                    "copied: 4 images, 6 tags, 8 properties, 2 members, 1 metadef namespaces "
                        + "(3 objects/properties/tags, 2 resource type associations), 2 tasks"), "\(run.output)")

            // Every row arrived unchanged: dates, statuses, tags, properties, members.
            let database = String(url.split(separator: "/").last!)
            let postgres = try PostgresImageRepository(
                settings: .init(
                    host: "127.0.0.1", port: server.port, username: PostgresServer.username, password: server.password,
                    database: database, tls: .disable, timeout: .seconds(30)),
                logger: logger)
            for image in images { #expect(try await postgres.get(image.id) == image) }
            #expect(try await postgres.members(of: images[1].id) == sourceMembers)
            let copiedMetadefs = PostgresMetadefRepository(sharing: postgres)
            #expect(try await copiedMetadefs.namespace("OS::Copied") == namespace)
            #expect(try await copiedMetadefs.items(.object, in: "OS::Copied") == sourceItems)
            #expect(try await copiedMetadefs.associations(in: "OS::Copied") == sourceAssociations)
            #expect(try await copiedMetadefs.resourceTypes().contains { $0.name == "OS::Custom::Copied" && !$0.isProtected })
            let copiedTasks = PostgresTaskRepository(sharing: postgres)
            for task in sourceTasks { #expect(try await copiedTasks.task(task.id) == task) }
            await postgres.shutdown()

            // A second copy into the now non-empty database is refused and changes nothing.
            run = try await Self.imagestore(["db", "copy", "--from", "sqlite:///" + sqlitePath, "--to", url], in: directory)
            #expect(run.exitCode == 1, "\(run.output)")
            #expect(run.output.contains("already holds 4 images"), "\(run.output)")
            #expect(try await server.psql("SELECT COUNT(*) FROM images", database: database) == "4")
        }
    }

    /// `db load-metadefs` on PostgreSQL keeps the namespaces in the database (every replica serves them).
    @Test func loadMetadefs_intoPostgres_persists_andSkipsWhatExists() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let definitions = try directory.makeDirectory("metadefs")
        try
            #"{"namespace": "OS::Test::Loaded", "display_name": "Loaded", "visibility": "public", "protected": true, "properties": {"hw_x": {"title": "X", "type": "string"}}, "resource_type_associations": [{"name": "OS::Glance::Image"}]}"#
            .write(toFile: definitions + "/loaded.json", atomically: true, encoding: .utf8)
        try await SharedPostgresServer.withDatabase { server, url in
            let config = directory.appending("imagestore.conf")
            try "[glance_store]\nfilesystem_store_datadir = \(directory.appending("images"))\n[database]\nconnection = \(url)\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            var run = try await Self.imagestore(["db", "load-metadefs", definitions, "--config-file", config], in: directory)
            #expect(run.exitCode == 0 && run.output.contains("1 loaded, 0 skipped"), "\(run.output)")
            run = try await Self.imagestore(["db", "load-metadefs", definitions, "--config-file", config], in: directory)
            #expect(run.output.contains("0 loaded, 1 skipped"), "\(run.output)")
            let database = String(url.split(separator: "/").last!)
            #expect(
                try await server.psql("SELECT namespace || ' ' || protected FROM metadef_namespaces", database: database)
                    == "OS::Test::Loaded true")
            #expect(try await server.psql("SELECT name FROM metadef_items WHERE kind = 'property'", database: database) == "hw_x")
        }
    }
}
