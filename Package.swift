// swift-tools-version:6.2
// ImageStore: an OpenStack Image API v2 (Glance) server with a guarded filesystem store.
import PackageDescription

// Shared by every target, as Hummingbird does: explicit existentials and imports.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "imagestore",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "imagestore", targets: ["imagestore"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // Environment-variable layer of the configuration (already in the graph through async-http-client).
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: []),
    ],
    targets: [
        // Domain models, the seams (protocols) every other module plugs into, and the upload/delete workflow
        // written against those seams only. No server, no direct I/O.
        .target(
            name: "ImageStoreCore",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // glance-api.conf-style INI parsing into typed, validated configuration.
        .target(
            name: "ImageStoreConfig",
            dependencies: [
                "ImageStoreCore", .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        // Image data stores: the filesystem store (streaming, hashing, crash-safe commit) and an in-memory one.
        .target(
            name: "ImageStoreStorage",
            dependencies: [
                "ImageStoreCore", "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Image metadata: SQLite (GRDB) and PostgreSQL (postgres-nio) repositories and an in-memory one.
        .target(
            name: "ImageStoreMetadata",
            dependencies: [
                "ImageStoreCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Debian's libssl-dev (OpenSSL 3 libcrypto): the upload's md5 and os_hash digests (see Digest.swift).
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // Debian's libnfs-dev, reached as a C module.
        .systemLibrary(
            name: "CLibNFS",
            pkgConfig: "libnfs",
            providers: [.apt(["libnfs-dev"])]
        ),
        // NFS client: probes an NFS server through libnfs, each call on its own thread under a deadline.
        .target(
            name: "ImageStoreNFS",
            dependencies: ["CLibNFS", "ImageStoreCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The mount guard: marker file, mount point and NFS server checked before every write.
        .target(
            name: "ImageStoreGuard",
            dependencies: [
                "ImageStoreCore", "ImageStoreConfig", "ImageStoreNFS",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // oslo.middleware-compatible health checks, run in the background so /healthcheck never waits on I/O.
        .target(
            name: "ImageStoreHealth",
            dependencies: [
                "ImageStoreCore", "ImageStoreConfig",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Who is calling and what they may do: the request identity and an oslo.policy-compatible engine with
        // Glance's default rules.
        .target(
            name: "ImageStorePolicy",
            dependencies: ["ImageStoreCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // Keystone v3: the service's own token and validation of users' tokens (cached, under deadlines).
        .target(
            name: "ImageStoreKeystone",
            dependencies: [
                "ImageStoreCore", "ImageStoreConfig", "ImageStorePolicy",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Prometheus metrics (swift-prometheus): one registry per application, nothing global.
        .target(
            name: "ImageStoreMetrics",
            dependencies: [.product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: swiftSettings
        ),
        // oslo.log's options through swift-log: one handler writing text or JSON lines to stdout, stderr or
        // log_file from a thread of its own; reloaded on SIGHUP.
        .target(
            name: "ImageStoreLogging",
            dependencies: ["ImageStoreCore", "ImageStoreConfig", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // HTTP API (Hummingbird): routes, Glance JSON, error mapping, and the one place the app is assembled.
        .target(
            name: "ImageStoreAPI",
            dependencies: [
                "ImageStoreCore", "ImageStoreConfig", "ImageStoreStorage", "ImageStoreMetadata", "ImageStoreNFS",
                "ImageStoreGuard", "ImageStoreHealth", "ImageStorePolicy", "ImageStoreKeystone", "ImageStoreMetrics",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The `imagestore` command.
        .executableTarget(
            name: "imagestore",
            dependencies: [
                "ImageStoreAPI", "ImageStoreConfig", "ImageStoreCore", "ImageStoreNFS", "ImageStoreGuard", "ImageStoreMetadata",
                "ImageStoreLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test helpers shared by several test targets (temp dirs, real ganesha server, process control).
        .target(
            name: "ImageStoreTestSupport",
            dependencies: [
                "ImageStoreCore", "ImageStorePolicy", "ImageStoreNFS", "ImageStoreAPI", "ImageStoreConfig",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/ImageStoreTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ImageStorePolicyTests", dependencies: ["ImageStorePolicy", "ImageStoreCore", "ImageStoreTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreKeystoneTests",
            dependencies: [
                "ImageStoreKeystone", "ImageStorePolicy", "ImageStoreConfig", "ImageStoreCore", "ImageStoreTestSupport",
                "ImageStoreAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreCoreTests",
            dependencies: [
                "ImageStoreCore", "ImageStoreTestSupport", "ImageStoreMetadata", "ImageStoreStorage",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreConfigTests", dependencies: ["ImageStoreConfig", "ImageStoreCore", "ImageStoreTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreStorageTests",
            dependencies: [
                "ImageStoreStorage", "ImageStoreTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreMetadataTests", dependencies: ["ImageStoreMetadata", "ImageStoreTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreNFSTests", dependencies: ["ImageStoreNFS", "ImageStoreTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreGuardTests",
            dependencies: [
                "ImageStoreGuard", "ImageStoreTestSupport", "ImageStoreConfig", "ImageStoreNFS", "ImageStoreCore",
                "ImageStoreMetadata",
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreHealthTests",
            dependencies: [
                "ImageStoreHealth", "ImageStoreAPI", "ImageStoreTestSupport", "ImageStoreConfig", "ImageStoreCore",
                "ImageStoreGuard", "ImageStoreNFS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ImageStoreAPITests",
            dependencies: [
                "ImageStoreAPI", "ImageStoreTestSupport", "ImageStoreConfig", "ImageStoreCore", "ImageStoreMetadata",
                "ImageStoreStorage", "ImageStoreGuard", "ImageStoreHealth", "ImageStoreMetrics", "ImageStoreLogging",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
    ]
)
