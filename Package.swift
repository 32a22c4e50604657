// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "lnp-node",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "LNPCrypto", targets: ["LNPCrypto"]),
        .library(name: "LNPWire", targets: ["LNPWire"]),
        .library(name: "LNPSession", targets: ["LNPSession"]),
        .executable(name: "lnp-bench", targets: ["lnp-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
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
        .target(name: "LNPSession", dependencies: ["LNPCrypto", "LNPWire"]),
        .target(name: "LNPRPC", dependencies: ["LNPCrypto", "LNPWire"]),
        .executableTarget(name: "lnp-bench", dependencies: ["LNPCrypto", "LNPWire", "LNPSession"]),
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
