import Foundation
import Hummingbird
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import Logging
import ServiceLifecycle

/// The one harness for tests of the whole application: the real app (`buildApplication`, real SQLite,
/// a real store directory in a fresh temp dir) behind a real HTTP server, handing the test a client.
/// The temp dir goes when the test is done with the harness, also when `run` was never reached.
public struct AppTestHarness: Sendable {
    public let base: TemporaryDirectory
    public var configuration: ServiceConfiguration
    /// The log level of the application under test.
    public var logLevel: Logger.Level = .warning

    public init(_ configure: (inout ServiceConfiguration) throws -> Void = { _ in }) throws {
        try self.init { configuration, _ in try configure(&configuration) }
    }

    /// For set-ups that need the temp dir itself (a second store directory, a policy file beside it).
    public init(_ configure: (inout ServiceConfiguration, TemporaryDirectory) throws -> Void) throws {
        base = try TemporaryDirectory(prefix: "imagestore-app", removeOnDeinit: true)
        configuration = ServiceConfiguration.embeddedDefault(baseDirectory: base.path)
        configuration.bindPort = 0
        try configure(&configuration, base)
    }

    public var datadir: String { configuration.store.datadir }

    /// Files in the store directory (data and temporaries).
    public func storeFiles() throws -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: datadir).sorted()) ?? []
    }

    private var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = logLevel
        return logger
    }

    public func run<T>(
        dependencies: ApplicationDependencies? = nil, _ body: @Sendable (any TestClientProtocol) async throws -> T
    ) async throws -> T {
        defer { base.remove() }
        let app = try buildApplication(configuration: configuration, dependencies: dependencies, logger: logger)
        return try await app.test(.live, body)
    }

    /// Runs the app on `configuration.bindPort` itself (the live test framework forces port 0) and
    /// hands the test a client connected to that port.
    public func runOnConfiguredPort(_ body: @Sendable (TestClient) async throws -> Void) async throws {
        defer { base.remove() }
        let app = try buildApplication(configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let port = configuration.bindPort
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let clock = ContinuousClock()
            let end = clock.now + .seconds(10)
            while !tcpPortAccepts(port) {
                guard clock.now < end else { throw TestSupportError("server not listening on \(port)") }
                try await Task.sleep(for: .milliseconds(10))
            }
            let client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(10)))
            client.connect()
            do {
                try await body(client)
            } catch {
                try? await client.shutdown()
                await group.triggerGracefulShutdown()
                throw error
            }
            try await client.shutdown()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
