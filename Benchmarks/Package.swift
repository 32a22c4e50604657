// swift-tools-version: 6.1
import PackageDescription

// Benchmarks for LNP Node, kept in their own package so the root package does not
// depend on ordo-one/benchmark. Run from this directory:
//   swift package --allow-writing-to-package-directory benchmark --target SessionBenchmarks
let package = Package(
    name: "lnp-node-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "lnp-node", path: ".."),
        // Only the malloc interposer (for mallocCountTotal): the default traits would also
        // pull swift-runtime-interposer on Linux with Swift 6.3.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "SessionBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "LNPCrypto", package: "lnp-node"),
                .product(name: "LNPSession", package: "lnp-node"),
                .product(name: "LNPWire", package: "lnp-node"),
            ],
            path: "Benchmarks/SessionBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
