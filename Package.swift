// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "lnp-node",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "LNPCrypto", targets: ["LNPCrypto"]),
        .library(name: "LNPWire", targets: ["LNPWire"]),
        .library(name: "LNPSession", targets: ["LNPSession"]),
        // For the fuzz package (Tests/Fuzz), which reaches the root package only through products.
        .library(name: "LNPTransport", targets: ["LNPTransport"]),
        .library(name: "LNPTransportTor", targets: ["LNPTransportTor"]),
        .library(name: "LNPTransportSpool", targets: ["LNPTransportSpool"]),
        .executable(name: "lnp-bench", targets: ["lnp-bench"]),
        .executable(name: "lnp-serial-bench", targets: ["lnp-serial-bench"]),
        .executable(name: "lnpd", targets: ["lnpd"]),
        .executable(name: "lnp-cli", targets: ["lnp-cli"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSecp256k1",
            pkgConfig: "libsecp256k1",
            providers: [.apt(["libsecp256k1-dev"])]
        ),
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSLCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "LNPCrypto",
            dependencies: [
                "CSecp256k1",
                "CSodium",
                "COpenSSLCrypto",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(name: "LNPWire"),
        .target(name: "LNPSession", dependencies: ["LNPCrypto", "LNPWire"], exclude: ["SEALED-ENVELOPE.md"]),
        .target(name: "LNPRPC", dependencies: ["LNPCrypto", "LNPWire"]),
        // No `pkgConfig:`: Debian's libzmq.pc adds a flag SwiftPM rejects.
        .systemLibrary(name: "CZeroMQ", providers: [.apt(["libzmq3-dev"])]),
        .target(name: "LNPBus", dependencies: ["CZeroMQ", "LNPWire", "LNPCrypto"]),
        .target(name: "LNPStore", dependencies: [
            "LNPCrypto",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ]),
        .target(name: "LNPClient", dependencies: ["LNPBus", "LNPRPC", "LNPCrypto", "LNPWire"]),
        .target(name: "KeyDaemon", dependencies: ["LNPBus", "LNPRPC", "LNPCrypto", "LNPWire",
                                                   .product(name: "Logging", package: "swift-log")]),
        .target(name: "PeerDaemon", dependencies: ["LNPBus", "LNPRPC", "LNPCrypto", "LNPWire", "LNPStore", "LNPTransport", "LNPTransportTCP",
                                                    "LNPTransportTor", "LNPTransportSerial", "LNPTransportUDP",
                                                    .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                                                    .product(name: "Logging", package: "swift-log")]),
        .target(name: "MessageDaemon", dependencies: ["LNPBus", "LNPRPC", "LNPCrypto", "LNPWire", "LNPStore", "LNPSession", "LNPTransport", "LNPTransportSpool",
                                                       .product(name: "Logging", package: "swift-log")]),
        .target(name: "NodeDaemon", dependencies: ["KeyDaemon", "PeerDaemon", "MessageDaemon", "LNPClient", "LNPBus", "LNPRPC", "LNPTransportSpool",
                                                    "LNPCrypto", "LNPWire", "LNPStore", "LNPTransport", "LNPTransportTor",
                                                    .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "lnpd", dependencies: ["NodeDaemon", "LNPClient",
                                                        .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                                        .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "lnp-cli", dependencies: ["LNPClient", "LNPRPC", "LNPCrypto", "LNPWire", "LNPTransport",
                                                           .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "LNPTransport", dependencies: ["LNPCrypto", "LNPWire", "LNPSession",
                .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "LNPTransportTCP", dependencies: ["LNPTransport", "LNPCrypto", "LNPWire", "LNPSession",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
                path: "Transports/TCP"),
        .target(name: "LNPTransportTor", dependencies: ["LNPTransport", "LNPTransportTCP", "LNPCrypto", "CSodium",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto")],
                path: "Transports/Tor"),
        .target(name: "LNPTransportSpool", dependencies: ["LNPTransport", "LNPCrypto", "LNPSession",
                .product(name: "Logging", package: "swift-log")],
                path: "Transports/Spool", exclude: ["SPOOL-FORMAT.md"]),
        .target(name: "LNPTransportSerial", dependencies: ["LNPTransport", "LNPCrypto", "LNPWire", "LNPSession",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
                path: "Transports/Serial"),
        .target(name: "LNPTransportUDP", dependencies: ["LNPTransport", "LNPCrypto", "LNPWire", "LNPSession",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
                path: "Transports/UDP"),
        // Scripts/bench links: the serial line's figures, real SerialTransports over socat ptys.
        .executableTarget(name: "lnp-serial-bench", dependencies: ["LNPTransportSerial", "LNPTransport", "LNPSession", "LNPCrypto", "LNPWire"]),
        .executableTarget(name: "lnp-bench", dependencies: ["LNPCrypto", "LNPWire", "LNPSession", "LNPClient", "LNPRPC"]),
        .testTarget(name: "LNPTransportTests", dependencies: ["LNPTransport", "LNPCrypto", "LNPWire", "LNPSession"]),
        // Helpers shared by several test targets (built only for tests).
        .target(name: "LNPTestSupport", dependencies: ["LNPCrypto", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
                path: "Tests/LNPTestSupport"),
        .testTarget(name: "LNPTransportTCPTests", dependencies: ["LNPTransportTCP", "LNPTransport", "LNPCrypto", "LNPWire", "LNPSession",
                "LNPTestSupport",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "LNPTransportUDPTests", dependencies: ["LNPTransportUDP", "LNPTransport", "LNPCrypto", "LNPWire", "LNPSession",
                "LNPTestSupport",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "LNPTransportTorTests", dependencies: ["LNPTransportTor", "LNPTransportTCP", "LNPTransport", "LNPCrypto", "LNPWire",
                "LNPSession", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "NodeDaemonTests", dependencies: ["NodeDaemon", "PeerDaemon", "LNPTransport", "LNPTransportTor"]),
        .testTarget(name: "LNPTransportSpoolTests", dependencies: ["LNPTransportSpool", "LNPTransport", "LNPCrypto", "LNPSession"]),
        .testTarget(name: "LNPTransportSerialTests", dependencies: ["LNPTransportSerial", "LNPTransport", "LNPCrypto", "LNPWire",
                "LNPSession", "LNPTestSupport", .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "LNPBusTests", dependencies: ["LNPBus", "CZeroMQ", "LNPWire", "LNPCrypto"]),
        .testTarget(name: "LNPStoreTests", dependencies: ["LNPStore", "LNPCrypto", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "MessageDaemonTests", dependencies: ["MessageDaemon", "LNPStore", "LNPRPC", "LNPCrypto", "LNPWire", "LNPSession",
                                                               "LNPTransportSpool"]),
        .testTarget(
            name: "LNPRPCTests",
            dependencies: ["LNPRPC", "LNPCrypto", "LNPWire"]
        ),
        .testTarget(
            name: "LNPCryptoTests",
            dependencies: ["LNPCrypto"]
        ),
        .testTarget(
            name: "LNPWireTests",
            dependencies: ["LNPWire"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "LNPSessionTests",
            dependencies: ["LNPSession", "LNPCrypto", "LNPWire"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
