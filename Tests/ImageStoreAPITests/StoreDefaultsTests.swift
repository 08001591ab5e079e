import ImageStoreConfig
import ImageStoreStorage
import Testing

/// `filesystem_store_direct_io` and `filesystem_store_flush_after` have their default in the option
/// (`FilesystemStoreOptions`, MiB) and in the store (`FilesystemImageStore`, bytes, for stores built
/// without options): ImageStoreStorage does not see ImageStoreConfig, so this is where the two meet.
@Suite struct StoreDefaultsTests {
    @Test func storeDefaults_areTheOptionDefaults() {
        #expect(FilesystemImageStore.defaultDirectIO == FilesystemStoreOptions.defaultDirectIO)
        #expect(FilesystemImageStore.defaultFlushAfter == FilesystemStoreOptions.defaultFlushAfterMiB << 20)
    }
}
