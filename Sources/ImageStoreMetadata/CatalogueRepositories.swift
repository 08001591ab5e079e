import ImageStoreCore
import Logging

/// The metadefs catalogue and the tasks kept with an image repository, in the same database: SQLite's
/// file, PostgreSQL's database (so every replica sees the same ones), or in memory beside an in-memory
/// repository. `buildApplication` and `imagestore db copy` both take them from here.
public enum CatalogueRepositories {
    public static func metadefs(beside repository: any ImageRepository, logger: Logger) -> any MetadefRepository {
        if let sqlite = repository as? SQLiteImageRepository { return SQLiteMetadefRepository(sharing: sqlite, logger: logger) }
        if let postgres = repository as? PostgresImageRepository { return PostgresMetadefRepository(sharing: postgres) }
        return InMemoryMetadefRepository()
    }

    public static func tasks(beside repository: any ImageRepository, logger: Logger) -> any TaskRepository {
        if let sqlite = repository as? SQLiteImageRepository { return SQLiteTaskRepository(sharing: sqlite, logger: logger) }
        if let postgres = repository as? PostgresImageRepository { return PostgresTaskRepository(sharing: postgres) }
        return InMemoryTaskRepository()
    }
}
