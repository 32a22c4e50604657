#if canImport(Glibc)
import Glibc
#endif
import LNPCrypto
import LNPSession
@testable import LNPTransportSpool
import Synchronization
import Testing

/// Export and import between real node keys in real directories.
@Suite(.serialized) struct SpoolImportTests {
    let alice = PrivateKey.generate()
    let bob = PrivateKey.generate()

    @Test func tenThousandMessagesGoAndReceiptsComeBack() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let toBob = scratch.sub("to-bob"), toAlice = scratch.sub("to-alice")
        let aliceState = scratch.sub("alice"), bobState = scratch.sub("bob")

        let sent = Sample.records(10_000)
        let written = try SpoolExporter(localKey: alice).export(sent, to: bob.publicKey, directory: toBob, nowMillis: Sample.nowMillis)
        #expect(written.count == 1, "10,000 small messages are one bundle")
        #expect(written.map(\.envelopeCount) == [10_000])

        let bobInbox = Inbox()
        let bobImporter = try Sample.importer(bob, ledgerIn: bobState)
        let report = try bobImporter.importDirectory(toBob, now: Sample.now, deliver: bobInbox.deliver)
        #expect(report.deliveredCount == 10_000)
        #expect(report.rejectedEnvelopes.isEmpty)
        #expect(bobInbox.records.allSatisfy { $0.sender == alice.publicKey })
        #expect(bobInbox.records.map(\.record) == sent, "every message, once, in order")

        // The same bundles again, also after a restart (a fresh ledger object from the file).
        for importer in [bobImporter, try Sample.importer(bob, ledgerIn: bobState)] {
            let again = Inbox()
            let second = try importer.importDirectory(toBob, now: Sample.now, deliver: again.deliver)
            #expect(again.bundles.isEmpty)
            #expect(second.outcomes == [.alreadyDone(id: written[0].id, fileName: written[0].fileName)])
        }

        let receipts = try SpoolReceipts.records(acknowledging: bobInbox.messages.map(\.id))
        #expect(receipts.count == 10)
        _ = try SpoolExporter(localKey: bob).export(receipts, to: alice.publicKey, directory: toAlice, nowMillis: Sample.nowMillis)
        let aliceInbox = Inbox()
        _ = try Sample.importer(alice, ledgerIn: aliceState).importDirectory(toAlice, now: Sample.now, deliver: aliceInbox.deliver)
        let acknowledged = aliceInbox.records.flatMap { item -> [[UInt8]] in
            guard item.sender == bob.publicKey, case let .receipt(receipt) = item.record else { return [] }
            return receipt.delivered
        }
        let sentIDs = sent.map { record -> [UInt8] in
            guard case let .message(message) = record else { return [] }
            return message.id
        }
        #expect(acknowledged == sentIDs)
    }

    @Test func damagedFilesAreRejectedAndNothingElseIsAffected() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let exporter = try SpoolExporter(localKey: alice)
        let good = try exporter.export(Sample.records(20), to: bob.publicKey, directory: spool, nowMillis: Sample.nowMillis)[0]
        let source = try exporter.export(Sample.records(20), to: bob.publicKey, directory: scratch.path, nowMillis: Sample.nowMillis)[0]
        let bytes = scratch.read(source.fileName)

        scratch.write("lnp-a-truncated.lnpspool", Array(bytes.prefix(bytes.count - 100)), in: spool)
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x01
        scratch.write("lnp-b-corrupt.lnpspool", flipped, in: spool)
        scratch.write("lnp-c-empty.lnpspool", [], in: spool)
        scratch.write("lnp-d-text.lnpspool", Array("not a bundle\n".utf8), in: spool)
        // Not bundles at all: ignored without a word.
        scratch.write("notes.txt", Array("hello".utf8), in: spool)

        let inbox = Inbox()
        let report = try Sample.importer(bob, ledgerIn: state).importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        #expect(inbox.bundles.map(\.id) == [good.id])
        #expect(inbox.records.count == 20)
        let reasons = report.outcomes.compactMap { outcome -> SpoolBundleError? in
            if case let .rejected(_, reason) = outcome { return reason }
            return nil
        }
        #expect(reasons == [.envelopesCutShort(declared: 20, complete: 19), .checksumMismatch,
                            .notABundle, .notABundle])
        #expect(report.outcomes.count == 5)
        #expect(report.outcomes.allSatisfy { !$0.description.isEmpty })
    }

    @Test func aBundleForAnotherNodeCostsOneECDHAndIsSkipped() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let carol = PrivateKey.generate()
        let forCarol = try SpoolExporter(localKey: alice).export(Sample.records(50), to: carol.publicKey, directory: spool,
                                                                nowMillis: Sample.nowMillis)[0]
        let counting = CountingKeyAgreement(bob)
        let importer = SpoolImporter(localKey: counting, ledger: try SpoolLedger(path: state + "/ledger"))
        let inbox = Inbox()
        let report = try importer.importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        #expect(report.outcomes == [.forAnotherNode(id: forCarol.id, fileName: forCarol.fileName)])
        #expect(inbox.bundles.isEmpty)
        #expect(counting.count == 1)
    }

    @Test func replayedAndAlteredEnvelopesAreRejectedOneByOne() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let records = Sample.records(4)
        let sealed = try records.map { try SealedEnvelope.seal(payload: $0.encode(), to: bob.publicKey, from: alice) }
        var altered = sealed[2]
        altered[altered.count - 1] ^= 1
        let expired = try SealedEnvelope.seal(payload: EnvelopeRecord.message(Sample.message(expiry: Sample.now - 1)).encode(),
                                              to: bob.publicKey, from: alice)
        let mallory = PrivateKey.generate()
        let fromMallory = try SealedEnvelope.seal(payload: Sample.records(1)[0].encode(), to: bob.publicKey, from: mallory)
        let badRecord = try SealedEnvelope.seal(payload: [1, 9], to: bob.publicKey, from: alice)
        // A replay inside one bundle, and one repacked into a second bundle of the same pass.
        let first = SpoolBundle.encode(id: .random(), envelopes: [sealed[0], sealed[1], sealed[0], altered, expired, badRecord])
        let second = SpoolBundle.encode(id: .random(), envelopes: [sealed[3], sealed[1], fromMallory])
        scratch.write("lnp-1.lnpspool", first, in: spool)
        scratch.write("lnp-2.lnpspool", second, in: spool)

        let inbox = Inbox()
        let importer = try Sample.importer(bob, ledgerIn: state)
        let report = try importer.importDirectory(spool, now: Sample.now, onlyFrom: alice.publicKey, deliver: inbox.deliver)
        #expect(inbox.records.map(\.record) == [records[0], records[1], records[3]])
        let problems = report.rejectedEnvelopes.map { "\($0.fileName)#\($0.index) \($0.problem)" }
        guard case let .message(m0) = records[0], case let .message(m1) = records[1] else { return }
        #expect(report.rejectedEnvelopes.map(\.problem) == [
            .duplicate(messageID: m0.id), .envelope(.badPayloadTag),
            .expired(messageID: try #require({ () -> [UInt8]? in
                if case let .message(message) = try? EnvelopeRecord.decode(SealedEnvelope.open(expired, with: bob).payload) { return message.id }
                return nil
            }()), expiry: Sample.now - 1, now: Sample.now),
            .record(.unknownKind(9)),
            .duplicate(messageID: m1.id), .unexpectedSender(mallory.publicKey),
        ], "\(problems)")
        #expect(report.rejectedEnvelopes.map(\.description).allSatisfy { $0.hasPrefix("envelope ") })
    }

    @Test func envelopesReplayedFromAnEarlierImportAreRejected() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let records = Sample.records(5)
        let sealed = try records.map { try SealedEnvelope.seal(payload: $0.encode(), to: bob.publicKey, from: alice) }
        scratch.write("lnp-1.lnpspool", SpoolBundle.encode(id: .random(), envelopes: sealed), in: spool)
        let importer = try Sample.importer(bob, ledgerIn: state)
        // msgd's store, as the importer sees it: which (sender, id) it holds.
        let inbox = Inbox()
        let held = { (sender: PublicKey, held: EnvelopeMessage) in
            inbox.records.contains { item in
                guard item.sender == sender, case let .message(message) = item.record else { return false }
                return message.id == held.id
            }
        }
        _ = try importer.importDirectory(spool, now: Sample.now, alreadyReceived: held, deliver: inbox.deliver)
        #expect(inbox.records.count == 5)

        // Someone repacks two old envelopes with a new one into a fresh bundle.
        let fresh = Sample.records(1)[0]
        let freshSealed = try SealedEnvelope.seal(payload: fresh.encode(), to: bob.publicKey, from: alice)
        scratch.write("lnp-2.lnpspool", SpoolBundle.encode(id: .random(), envelopes: [sealed[3], freshSealed, sealed[0]]), in: spool)
        let report = try importer.importDirectory(spool, now: Sample.now, alreadyReceived: held, deliver: inbox.deliver)
        guard case let .message(m3) = records[3], case let .message(m0) = records[0] else { return }
        #expect(report.rejectedEnvelopes.map(\.problem) == [.alreadyReceived(messageID: m3.id), .alreadyReceived(messageID: m0.id)])
        #expect(inbox.records.map(\.record) == records + [fresh], "the new message still gets through")
    }

    @Test func aCrashMidWriteLeavesOnlyAnIgnoredTemporaryFile() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let sealed = try Sample.records(100).map { try SealedEnvelope.seal(payload: $0.encode(), to: bob.publicKey, from: alice) }
        let bytes = SpoolBundle.encode(id: .random(), envelopes: sealed)
        // What a writer killed before its rename leaves: a complete or partial dot-named file.
        let name = SpoolExporter.fileName(millis: Sample.nowMillis, part: 0, id: .random())
        _ = try SpoolFiles.writeTemporary(directory: spool, name: name, contents: Array(bytes.prefix(bytes.count / 2)))
        #expect(scratch.names(spool) == [SpoolFiles.temporaryName(for: name)])
        let inbox = Inbox()
        let report = try Sample.importer(bob, ledgerIn: state).importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        #expect(report.outcomes.isEmpty)
        #expect(inbox.bundles.isEmpty)
    }

    @Test func aFailedDeliveryLeavesTheBundleForTheNextPass() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let written = try SpoolExporter(localKey: alice).export(Sample.records(10), to: bob.publicKey, directory: spool,
                                                               nowMillis: Sample.nowMillis)[0]
        struct StoreDown: Error {}
        let importer = try Sample.importer(bob, ledgerIn: state)
        #expect(throws: SpoolImportError.self) {
            try importer.importDirectory(spool, now: Sample.now, removeImported: true) { _ in throw StoreDown() }
        }
        #expect(!importer.ledger.contains(written.id))
        let inbox = Inbox()
        let report = try importer.importDirectory(spool, now: Sample.now, removeImported: true, deliver: inbox.deliver)
        #expect(report.deliveredCount == 10)
        #expect(importer.ledger.contains(written.id))
        #expect(scratch.names(spool).isEmpty, "an imported bundle is removed when asked")
    }

    @Test func aFailingKeyServiceKeepsTheBundleForTheNextPass() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool")
        let written = try SpoolExporter(localKey: alice).export(Sample.records(200), to: bob.publicKey, directory: spool,
                                                               nowMillis: Sample.nowMillis)[0]
        // keyd stops answering part-way through the bundle: a fault only a fake can inject.
        let failing = CountingKeyAgreement(bob, failAfter: 50)
        let ledger = try SpoolLedger(path: scratch.path + "/ledger")
        let inbox = Inbox()
        #expect(throws: SpoolImportError.self) {
            try SpoolImporter(localKey: failing, ledger: ledger).importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        }
        #expect(inbox.bundles.count == 0)
        #expect(!ledger.contains(written.id))
        let report = try SpoolImporter(localKey: bob, ledger: ledger).importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        #expect(report.deliveredCount == 200)
    }

    @Test func exportSplitsBundlesAtTheLimit() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let limit = SpoolExporter.minimumBundleLimit
        let exporter = try SpoolExporter(localKey: alice, bundleLimit: limit)
        let records = Sample.records(300, body: 1_000) + [.message(Sample.message(body: 200_000))]
        let written = try exporter.export(records, to: bob.publicKey, directory: spool, nowMillis: Sample.nowMillis)
        #expect(written.count > 4)
        #expect(written.dropLast().allSatisfy { $0.byteCount <= limit })
        #expect(written.last?.envelopeCount == 1, "an envelope over the split size goes alone")
        #expect(written.map(\.fileName) == written.map(\.fileName).sorted(), "names sort in export order")
        #expect(scratch.names(spool) == written.map(\.fileName))
        let inbox = Inbox()
        _ = try Sample.importer(bob, ledgerIn: state).importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        #expect(inbox.records.map(\.record) == records)

        #expect(throws: SpoolExportError.self) { try SpoolExporter(localKey: alice, bundleLimit: 1_000) }
        #expect(throws: SpoolExportError.self) { try SpoolExporter(localKey: alice, bundleLimit: SpoolBundle.maximumLength) }
    }

    @Test func importIsBounded() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let spool = scratch.sub("spool"), state = scratch.sub("state")
        let exporter = try SpoolExporter(localKey: alice)
        for _ in 0..<5 { _ = try exporter.export(Sample.records(3), to: bob.publicKey, directory: spool, nowMillis: Sample.nowMillis) }
        let large = try exporter.export(Sample.records(1, body: 10_000), to: bob.publicKey, directory: spool, nowMillis: Sample.nowMillis + 1)[0]

        var limits = SpoolImportLimits()
        limits.bundlesPerPass = 4
        limits.bundleLength = 5_000
        let importer = try Sample.importer(bob, ledgerIn: state, limits: limits)
        let inbox = Inbox()
        let first = try importer.importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        #expect(first.outcomes.count == 4)
        #expect(first.moreWaiting)
        let second = try importer.importDirectory(spool, now: Sample.now, deliver: inbox.deliver)
        #expect(second.outcomes.filter { if case .imported = $0 { true } else { false } }.count == 1)
        #expect(second.outcomes.filter { if case .alreadyDone = $0 { true } else { false } }.count == 4)
        #expect(!second.moreWaiting)
        #expect(second.outcomes.contains(.rejected(fileName: large.fileName, reason: .tooLarge(length: large.byteCount, limit: 5_000))))
        #expect(inbox.records.count == 15)

        var envelopeLimits = SpoolImportLimits()
        envelopeLimits.envelopeLength = 1_000
        let strict = try Sample.importer(bob, ledgerIn: scratch.sub("strict"), limits: envelopeLimits)
        let report = try strict.importDirectory(spool, now: Sample.now, deliver: { _ in })
        // An envelope over the reader's limit is refused alone, before any cryptography.
        #expect(report.rejectedEnvelopes == [SpoolEnvelopeRejection(fileName: large.fileName, index: 0,
                                                                    problem: .envelope(.tooLarge(length: large.byteCount - 61, limit: 1_000)))])
        #expect(report.deliveredCount == 15)
    }

    @Test func ledgerSurvivesRestartsTornLinesAndStaysBounded() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let path = scratch.path + "/ledger"
        let ledger = try SpoolLedger(path: path, capacity: 10)
        let ids = (0..<25).map { _ in SpoolBundleID.random() }
        for id in ids.prefix(8) { try ledger.record(id) }
        // A crash in the middle of an append leaves a torn line.
        let fd = open(path, O_WRONLY | O_APPEND)
        _ = write(fd, "0123456789", 10)
        close(fd)
        let reloaded = try SpoolLedger(path: path, capacity: 10)
        #expect(reloaded.count == 8)
        #expect(ids.prefix(8).allSatisfy(reloaded.contains))
        for id in ids.dropFirst(8) { try reloaded.record(id) }
        #expect(reloaded.count <= 10)
        #expect(reloaded.contains(ids[24]))
        #expect(!reloaded.contains(ids[0]), "the oldest are forgotten beyond the capacity")
        let again = try SpoolLedger(path: path, capacity: 10)
        #expect(again.count == reloaded.count)
        #expect(again.contains(ids[24]))
    }
}

/// The node key, counting the ECDH calls made with it, and failing after `failAfter` of
/// them as keyd does when it stops answering.
final class CountingKeyAgreement: StaticKeyAgreement {
    struct KeyServiceDown: Error {}

    let key: PrivateKey
    let failAfter: Int
    private let calls = Mutex(0)

    init(_ key: PrivateKey, failAfter: Int = .max) {
        self.key = key
        self.failAfter = failAfter
    }

    var publicKey: PublicKey { key.publicKey }
    var count: Int { calls.withLock { $0 } }

    func sharedSecret(with point: PublicKey) throws -> [UInt8] {
        let call = calls.withLock { calls in
            calls += 1
            return calls
        }
        guard call <= failAfter else { throw KeyServiceDown() }
        return key.sharedSecret(with: point)
    }
}
