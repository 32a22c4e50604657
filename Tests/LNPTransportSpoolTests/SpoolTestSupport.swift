#if canImport(Glibc)
import Glibc
#endif
import LNPCrypto
import LNPSession
@testable import LNPTransportSpool

/// A fresh directory under /tmp, removed with everything in it by `remove()`.
struct ScratchDirectory {
    let path: String

    init() {
        var template = Array("/tmp/lnp-spool-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    func sub(_ name: String) -> String {
        let sub = path + "/" + name
        mkdir(sub, 0o700)
        return sub
    }

    func remove() {
        removeTree(path)
    }

    private func removeTree(_ path: String) {
        if let handle = opendir(path) {
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name != ".", name != ".." else { continue }
                let child = path + "/" + name
                if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(child) } else { unlink(child) }
            }
            closedir(handle)
        }
        rmdir(path)
    }

    func names(_ directory: String? = nil) -> [String] {
        (try? SpoolFiles.list(directory ?? path, limit: 100_000, keep: { $0 != "." && $0 != ".." }).names) ?? []
    }

    func read(_ name: String, in directory: String? = nil) -> [UInt8] {
        (try? SpoolFiles.readFile(path: (directory ?? path) + "/" + name, limit: SpoolBundle.maximumLength, whole: true)) ?? []
    }

    func write(_ name: String, _ bytes: [UInt8], in directory: String? = nil) {
        let path = (directory ?? self.path) + "/" + name
        unlink(path)
        try! SpoolFiles.writeAtomically(directory: directory ?? self.path, name: name, contents: bytes)
    }
}

enum Sample {
    static let now: UInt64 = 1_800_000_000
    static let nowMillis: UInt64 = now * 1000

    static func message(body: Int = 100, expiry: UInt64 = Sample.now + 86_400) -> EnvelopeMessage {
        try! EnvelopeMessage(id: SecureRandom.bytes(16), created: now - 10, expiry: expiry, type: 1, body: SecureRandom.bytes(body))
    }

    static func records(_ count: Int, body: Int = 100) -> [EnvelopeRecord] {
        (0..<count).map { _ in .message(message(body: body)) }
    }

    static func importer(_ key: PrivateKey, ledgerIn directory: String, limits: SpoolImportLimits = SpoolImportLimits()) throws -> SpoolImporter {
        SpoolImporter(localKey: key, ledger: try SpoolLedger(path: directory + "/" + SpoolLedger.fileName), limits: limits)
    }
}

/// Collects what an importer delivers.
final class Inbox {
    var bundles: [SpoolImportedBundle] = []
    var records: [SpoolImportedRecord] { bundles.flatMap(\.records) }
    var messages: [EnvelopeMessage] {
        records.compactMap { if case let .message(message) = $0.record { message } else { nil } }
    }
    func deliver(_ bundle: SpoolImportedBundle) { bundles.append(bundle) }
}
