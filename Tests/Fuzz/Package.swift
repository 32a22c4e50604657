// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets for LNP Node's untrusted-input parsers (LNPWire's BOLT-1 codec,
// LNPSession's BOLT-8 handshake, frame codec, PeerSession, datagram session, line framing and
// sealed envelopes; the tor transport's SOCKS5 and control-port parsers; spool bundles). A separate package, like
// Benchmarks/, so the root package's normal builds never see sanitizer flags. Build and
// run them with Scripts/fuzz; by hand, from the repository root:
//
//   swift build --package-path Tests/Fuzz --scratch-path Tests/Fuzz/.build-fuzz -c release \
//       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   Tests/Fuzz/.build-fuzz/release/fuzz-tlv -max_len=512 CORPUS_COPY_DIR
//
// How `main` works (the part that is easy to get wrong with SwiftPM):
// - `-sanitize=fuzzer` makes the driver link libclang_rt.fuzzer as a *whole archive*, so
//   libFuzzer's own `main` (which calls `LLVMFuzzerTestOneInput`) is always in the link.
// - SwiftPM (tools >= 5.5, Linux) compiles every executable module with its entry point
//   renamed to `<module>_main` and links with `--defsym main=<module>_main`. With
//   `-parse-as-library` and no entry point, that symbol does not exist and the link fails
//   ("undefined symbol 'fuzz_tlv_main' referenced in expression").
// - So each executable has a real `@main` (compiled as `fuzz_tlv_main` etc.), and SwiftPM's
//   `--defsym` makes it the program's `main`, taking precedence over libFuzzer's (checked
//   with both gold, the default, and lld). That `main` calls libFuzzer's public C entry
//   point `LLVMFuzzerRunDriver` (declared in CFuzzSupport), so every libFuzzer flag works
//   exactly as with libFuzzer's `main`. `LLVMFuzzerTestOneInput` is still defined
//   (`@_cdecl`), because libFuzzer's `main` object, linked whole, refers to it; it is the
//   same function the driver is given.
// - `-parse-as-library` is harmless here (every file is a library-style file with `@main`
//   or no top-level code) and keeps the build command the one the Swift docs give.
//
// One executable per target, so crash reproduction is `fuzz-<target> ARTIFACT` and
// libFuzzer's -fork/-jobs modes re-run the right binary. The harnesses themselves live in
// the LNPFuzzTargets library, so they are compiled once and can share helpers.
let fuzzTargets = [
    "tlv", "message", "handshake", "frames", "session",
    "socks", "torcontrol", "datagram", "lineframing", "envelope", "spool",
]

let package = Package(
    name: "lnp-node-fuzz",
    platforms: [.macOS(.v14)],
    products: fuzzTargets.map { .executable(name: "fuzz-\($0)", targets: ["fuzz-\($0)"]) },
    dependencies: [
        .package(name: "lnp-node", path: "../.."),
    ],
    targets: [
        .target(name: "CFuzzSupport"),
        .target(
            name: "LNPFuzzTargets",
            dependencies: [
                "CFuzzSupport",
                .product(name: "LNPCrypto", package: "lnp-node"),
                .product(name: "LNPWire", package: "lnp-node"),
                .product(name: "LNPSession", package: "lnp-node"),
                .product(name: "LNPTransport", package: "lnp-node"),
                .product(name: "LNPTransportTor", package: "lnp-node"),
                .product(name: "LNPTransportSpool", package: "lnp-node"),
            ]
        ),
    ] + fuzzTargets.map {
        .executableTarget(name: "fuzz-\($0)", dependencies: ["LNPFuzzTargets"], path: "Sources/fuzz-\($0)")
    },
    swiftLanguageModes: [.v6]
)
