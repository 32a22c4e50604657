#if canImport(Glibc)
import Glibc
#endif
import LNPCrypto
import LNPSession
import LNPTransport
@testable import LNPTransportSpool
import Synchronization
import Testing

/// Two nodes sharing one directory through `spool://NODEID@/path`.
@Suite struct SpoolWatcherTests {
    let alice = PrivateKey.generate()
    let bob = PrivateKey.generate()

    func watcher(_ key: PrivateKey, peer: PrivateKey, shared: String, state: String, waiting: Int = 16) throws -> SpoolWatcher {
        let ledger = try SpoolLedger(path: state + "/" + SpoolLedger.fileName)
        let address = try PeerAddress(parsing: "spool://\(peer.publicKey.hex)@\(shared)")
        return try SpoolWatcher(address: address, importer: SpoolImporter(localKey: key, ledger: ledger),
                                exporter: SpoolExporter(localKey: key), ownBundlesWaiting: waiting)
    }

    @Test func messagesGoOneWayAndReceiptsComeBackThroughOneDirectory() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let shared = scratch.sub("shared")
        let aliceWatch = try watcher(alice, peer: bob, shared: shared, state: scratch.sub("alice"))
        let bobWatch = try watcher(bob, peer: alice, shared: shared, state: scratch.sub("bob"))
        let messages = Sample.records(200)

        var aliceOutbox = messages
        let aliceInbox = Inbox(), bobInbox = Inbox()
        let first = try aliceWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis, outgoing: {
            defer { aliceOutbox = [] }
            return aliceOutbox
        }, deliver: aliceInbox.deliver)
        #expect(first.written.count == 1)
        // Alice's next round does not read her own bundle.
        let own = try aliceWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis, outgoing: { [] }, deliver: aliceInbox.deliver)
        #expect(own.imported.outcomes == [.alreadyDone(id: first.written[0].id, fileName: first.written[0].fileName)])

        var bobOutbox = [EnvelopeRecord]()
        let bobRound = try bobWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis + 1, outgoing: {
            defer { bobOutbox = [] }
            return bobOutbox
        }, deliver: { bundle in
            bobInbox.deliver(bundle)
            let ids = bundle.records.compactMap { if case let .message(message) = $0.record { message.id } else { nil } }
            bobOutbox += try SpoolReceipts.records(acknowledging: ids)
        })
        #expect(bobRound.imported.deliveredCount == 200)
        #expect(bobInbox.records.map(\.record) == messages)
        #expect(bobRound.written.count == 1)
        #expect(!scratch.names(shared).contains(first.written[0].fileName), "Bob removed what he took in")

        let back = try aliceWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis + 2, outgoing: { [] }, deliver: aliceInbox.deliver)
        #expect(back.imported.deliveredCount == 1)
        guard case let .receipt(receipt) = aliceInbox.records.first?.record else {
            Issue.record("no receipt came back")
            return
        }
        #expect(receipt.delivered == messages.compactMap { if case let .message(message) = $0 { message.id } else { nil } })
        #expect(scratch.names(shared).isEmpty, "a mailbox empties once both sides have taken their bundles")
    }

    @Test func exportWaitsWhileThePeerIsBehindAndDamagedFilesAreReadOnce() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let shared = scratch.sub("shared")
        let aliceWatch = try watcher(alice, peer: bob, shared: shared, state: scratch.sub("alice"), waiting: 2)
        let asked = Mutex(0)
        for round in 0..<4 {
            let result = try aliceWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis + UInt64(round), outgoing: {
                asked.withLock { $0 += 1 }
                return Sample.records(3)
            }, deliver: { _ in })
            #expect(result.exportHeldBack == (round >= 2))
        }
        #expect(asked.withLock { $0 } == 2)

        scratch.write("lnp-junk.lnpspool", Array(repeating: 7, count: 100), in: shared)
        let seen = try aliceWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis, outgoing: { [] }, deliver: { _ in })
        #expect(seen.imported.outcomes.contains(.rejected(fileName: "lnp-junk.lnpspool", reason: .notABundle)))
        let later = try aliceWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis, outgoing: { [] }, deliver: { _ in })
        #expect(!later.imported.outcomes.contains { $0.fileName == "lnp-junk.lnpspool" })
    }

    @Test func temporaryFilesOfACrashedWriterAreRemovedOnceStale() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let shared = scratch.sub("shared")
        let aliceWatch = try watcher(alice, peer: bob, shared: shared, state: scratch.sub("alice"))
        let stale = try SpoolFiles.writeTemporary(directory: shared, name: "lnp-old.lnpspool", contents: [1, 2, 3])
        let fresh = try SpoolFiles.writeTemporary(directory: shared, name: "lnp-new.lnpspool", contents: [1, 2, 3])
        // Two hours old: past the age at which no writer can still be at it.
        var times = [timeval(tv_sec: time(nil) - 7_200, tv_usec: 0), timeval(tv_sec: time(nil) - 7_200, tv_usec: 0)]
        #expect(utimes(stale, &times) == 0)
        let round = try aliceWatch.poll(now: Sample.now, nowMillis: Sample.nowMillis, outgoing: { [] }, deliver: { _ in })
        #expect(round.imported.outcomes.isEmpty, "temporary files are never read as bundles")
        #expect(scratch.names(shared) == [String(fresh.split(separator: "/").last!)])
    }

    @Test func onlySpoolAddressesAreWatched() throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let ledger = try SpoolLedger(path: scratch.path + "/ledger")
        let address = try PeerAddress(parsing: "\(bob.publicKey.hex)@127.0.0.1:9735")
        #expect(throws: SpoolWatcher.Failure.self) {
            try SpoolWatcher(address: address, importer: SpoolImporter(localKey: alice, ledger: ledger), exporter: SpoolExporter(localKey: alice))
        }
    }

    @Test func runPollsUntilCancelled() async throws {
        let scratch = ScratchDirectory()
        defer { scratch.remove() }
        let shared = scratch.sub("shared")
        let aliceWatch = try watcher(alice, peer: bob, shared: shared, state: scratch.sub("alice"))
        let bobWatch = try watcher(bob, peer: alice, shared: shared, state: scratch.sub("bob"))
        let pending = Mutex(Sample.records(30))
        let received = Mutex(0)
        let clock: @Sendable () -> (seconds: UInt64, millis: UInt64) = { (Sample.now, Sample.nowMillis) }
        let runners = [
            Task { await aliceWatch.run(interval: .milliseconds(20), clock: clock,
                                        outgoing: { pending.withLock { records in defer { records = [] }; return records } },
                                        deliver: { _ in }) },
            Task { await bobWatch.run(interval: .milliseconds(20), clock: clock, outgoing: { [] },
                                      deliver: { bundle in received.withLock { $0 += bundle.records.count } }) },
        ]
        defer { runners.forEach { $0.cancel() } }
        for _ in 0..<1_500 where received.withLock({ $0 }) < 30 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(received.withLock { $0 } == 30)
        for runner in runners {
            runner.cancel()
            await runner.value
        }
    }
}
