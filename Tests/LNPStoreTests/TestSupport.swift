import Foundation
import LNPCrypto
@testable import LNPStore

/// A fresh directory under the system temp dir, removed when the test's closure returns.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("lnpstore-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

func newKey() -> PublicKey { PrivateKey.generate().publicKey }

func payloads(_ count: Int, size: Int = 100, start: Int = 0) -> [(type: UInt16, payload: [UInt8])] {
    (0..<count).map { i in (type: UInt16(32768 + (start + i) % 7), payload: [UInt8](repeating: UInt8(truncatingIfNeeded: start + i), count: size)) }
}

func inbound(
    _ seqs: [UInt64?], ids: [[UInt8]]? = nil, size: Int = 10
) -> [(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])] {
    seqs.enumerated().map { i, seq in
        (id: ids?[i] ?? SecureRandom.bytes(16), seq: seq, type: 1, payload: [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: size))
    }
}

func withTemporaryDirectory<R>(_ body: (String) async throws -> R) async throws -> R {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("lnpstore-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

struct InjectedFault: Error {}
