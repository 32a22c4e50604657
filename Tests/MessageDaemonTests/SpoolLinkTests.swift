import Foundation
import LNPCrypto
import LNPRPC
import LNPStore
import Logging
import Testing
@testable import MessageDaemon

/// `SpoolLink` between two real stores and two real node keys, without processes: export,
/// import, receipts, expiry and the replay check. (The end-to-end tests drive it through
/// lnpd and lnp-cli; Tests/EndToEnd/test_spool.py.)
@Suite struct SpoolLinkTests {
    struct Side {
        let key: PrivateKey
        let store: MessageStore
        let link: SpoolLink
    }

    func side(_ directory: String, _ name: String) throws -> Side {
        let data = directory + "/" + name
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let key = PrivateKey.generate()
        let store = try MessageStore(path: data + "/node.sqlite")
        return Side(key: key, store: store, link: try SpoolLink(store: store, keyAgreement: key, dataDirectory: data, logger: Logger(label: "test")))
    }

    func withDirectory(_ body: (String) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("spoollink-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    func folder(_ root: String, _ name: String) throws -> String {
        let path = root + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    @Test func messagesGoOutAndReceiptsComeBack() throws {
        try withDirectory { root in
            let a = try side(root, "a"), b = try side(root, "b")
            let sent = try a.store.enqueue(to: b.key.publicKey, messages: (0..<300).map { (UInt16(32769), Array("m\($0)".utf8)) })
            let stick = try folder(root, "stick"), back = try folder(root, "back")

            let exported = try a.link.export(SpoolExportRequest(directory: stick, peer: nil))
            #expect(exported.messages == 300 && exported.receipts == 0 && exported.peers == 1 && !exported.files.isEmpty)
            #expect(try a.store.status(of: sent[0].id)?.state == .sent)
            #expect(try a.store.status(of: sent[0].id)?.link == "spool")

            let imported = try b.link.importBundles(SpoolImportRequest(directory: stick))
            #expect(imported.messagesStored == 300 && imported.duplicates == 0 && imported.problems.isEmpty)
            let got = try b.store.incoming(afterRowID: 0, from: nil, limit: 1_000)
            #expect(got.map(\.id) == sent.map(\.id))
            #expect(got.map(\.seq) == sent.map { $0.seq })
            #expect(try b.store.highestContiguousSeq(from: a.key.publicKey) == 300)

            let receipts = try b.link.export(SpoolExportRequest(directory: back, peer: a.key.publicKey))
            #expect(receipts.receipts == 1 && receipts.messages == 0)
            let applied = try a.link.importBundles(SpoolImportRequest(directory: back))
            #expect(applied.receipts == 1)
            #expect(try a.store.status(of: sent[299].id)?.state == .delivered)
            #expect(try a.store.undelivered(to: b.key.publicKey, afterSeq: 0, limit: 10).isEmpty)
            // Nothing owed either way now.
            #expect(try a.link.export(SpoolExportRequest(directory: stick, peer: nil)).files.isEmpty)
            #expect(try b.link.export(SpoolExportRequest(directory: back, peer: nil)).files.isEmpty)
        }
    }

    /// Payloads kept in segment files on the sender go out in bundles and land in the
    /// receiver's segment files, byte for byte.
    @Test func largeMessagesGoThroughTheSpoolIntoSegmentFiles() throws {
        try withDirectory { root in
            let a = try side(root, "a"), b = try side(root, "b")
            let payloads = [SecureRandom.bytes(3 << 20), SecureRandom.bytes(100), SecureRandom.bytes(MessageStore.defaultExternalPayloadThreshold),
                            SecureRandom.bytes(1 << 20)]
            let sent = try a.store.enqueue(to: b.key.publicKey, messages: payloads.map { (UInt16(32769), $0) })
            let stick = try folder(root, "stick")
            let exported = try a.link.export(SpoolExportRequest(directory: stick, peer: nil))
            #expect(exported.messages == 4)
            let imported = try b.link.importBundles(SpoolImportRequest(directory: stick))
            #expect(imported.messagesStored == 4 && imported.problems.isEmpty)
            let got = try b.store.incoming(afterRowID: 0, from: nil, limit: 10)
            #expect(got.map(\.id) == sent.map(\.id))
            #expect(got.map(\.payload) == payloads)
            let segments = MessageStore.payloadDirectory(forDatabaseAt: root + "/b/node.sqlite") + "/00000001.seg"
            let size = (try FileManager.default.attributesOfItem(atPath: segments)[.size] as! NSNumber).intValue
            #expect(size == payloads.reduce(0) { $0 + $1.count } - 100)
        }
    }

    @Test func aLostReceiptIsWrittenAgainWhenTheSenderRetries() throws {
        try withDirectory { root in
            let a = try side(root, "a"), b = try side(root, "b")
            _ = try a.store.enqueue(to: b.key.publicKey, messages: [(1, [1]), (1, [2])])
            let first = try folder(root, "first"), lost = try folder(root, "lost"), retry = try folder(root, "retry")
            _ = try a.link.export(SpoolExportRequest(directory: first, peer: nil))
            #expect(try b.link.importBundles(SpoolImportRequest(directory: first)).messagesStored == 2)
            #expect(try b.link.export(SpoolExportRequest(directory: lost, peer: nil)).receipts == 1)
            // The receipt never reaches a, which exports the same messages again.
            _ = try a.link.export(SpoolExportRequest(directory: retry, peer: nil))
            let again = try b.link.importBundles(SpoolImportRequest(directory: retry))
            #expect(again.messagesStored == 0 && again.duplicates == 2)
            #expect(try b.link.export(SpoolExportRequest(directory: retry, peer: nil)).receipts == 1, "owed again")
            #expect(try b.store.incoming(afterRowID: 0, from: nil, limit: 10).count == 2)
        }
    }

    @Test func expiredMessagesAreNotExportedAndBadDirectoriesAreRefused() throws {
        try withDirectory { root in
            let a = try side(root, "a"), b = try side(root, "b")
            _ = try a.store.enqueue(to: b.key.publicKey, messages: [(1, [1])], expiresAt: Date(timeIntervalSinceNow: -1))
            _ = try a.store.enqueue(to: b.key.publicKey, messages: [(1, [2])], expiresAt: Date(timeIntervalSinceNow: 3_600))
            let stick = try folder(root, "stick")
            #expect(try a.link.export(SpoolExportRequest(directory: stick, peer: nil)).messages == 1)
            #expect(throws: SpoolLinkError.self) { try a.link.export(SpoolExportRequest(directory: root + "/missing", peer: nil)) }
            #expect(throws: SpoolLinkError.self) { try b.link.importBundles(SpoolImportRequest(directory: root + "/a/node.sqlite")) }
            // A bundle for b is nothing to a third node.
            let c = try side(root, "c")
            let report = try c.link.importBundles(SpoolImportRequest(directory: stick))
            #expect(report.bundlesForAnotherNode == 1 && report.messagesStored == 0)
        }
    }
}
