#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LNPBus
import LNPCrypto
import LNPRPC
import LNPSession
import LNPStore
import LNPTransport
import LNPTransportSpool
import LNPWire
import Logging
import Synchronization

/// msgd's store-and-forward link: `spool export` writes what the store owes a peer into bundle
/// files, `spool import` takes bundles in. It is one more link for the same per-recipient
/// sequence as `lnp_message`: an exported message carries its sequence number, so the receiver
/// stores it exactly as if it came over TCP (deduplicated by sender and sequence number), and
/// a receipt carries the receiver's contiguous mark, which the sender applies like an `lnp_ack`.
///
/// A bundle is a one-way trip, so an export writes every message still owed, not only those
/// never sent: exporting again is the retry, until a receipt comes back or the message expires.
///
/// Exports and imports run one at a time on a dispatch queue of their own, never on the
/// engine actor or the concurrency pool: every seal and open does ECDH through keyd with
/// `RemoteKeyAgreement`, which blocks its thread until keyd answers over the bus, and that
/// answer itself needs the pool.
public final class SpoolLink: Sendable {
    public static let linkName = "spool"
    /// The expiry an envelope gets for a message that has none: counted from each export, so
    /// a message re-exported later travels again with a fresh one. It bounds how long a
    /// receiver may have to remember the message (see SEALED-ENVELOPE.md, Replays).
    static let lifetimeWithoutExpiry: UInt64 = 30 * 86_400
    /// Messages read from the store per page of an export, at most, and about this many
    /// payload bytes: an export of a million large messages never holds them all.
    static let exportPageMessages = 10_000
    static let exportPageBytes = 32 << 20
    /// How long the front door and lnp-cli wait for an export or import: the import of a full
    /// pass (1,000 bundles of up to 64 MiB) is bounded by the disk, not by this node.
    public static let requestTimeout: Duration = .seconds(900)

    private let store: MessageStore
    private let keyAgreement: any StaticKeyAgreement
    private let ledger: SpoolLedger
    private let logger: Logger
    private let queue = DispatchQueue(label: "msgd.spool")
    /// `spool://NODEID@/path` peers: each directory is kept by a `SpoolWatcher`.
    private let watched: [PeerAddress]
    private let watchers = Mutex<[Task<Void, Never>]>([])
    private let watchProgress = Mutex<[PublicKey: WatchProgress]>([:])
    /// Senders whose messages a watcher found held already: they resend because our receipt
    /// has not reached them, so they are owed one again (recorded at the round's export).
    private let replayedFrom = Mutex<Set<PublicKey>>([])

    /// What a watcher has put into a shared directory for one peer.
    struct WatchProgress {
        var sentThrough: UInt64 = 0
        var lastFull: ContinuousClock.Instant?
    }

    /// How long a watcher waits for a receipt before it writes everything still owed again.
    static let watchRetry: Duration = .seconds(60)
    /// Messages a watcher writes per round at most (a round every 2 s).
    static let watchPageMessages = 5_000

    /// `dataDirectory` holds the ledger of imported bundles (`spool-ledger`); `watching` lists
    /// the `spool://` peers whose directories msgd keeps once `startWatching` is called.
    public init(store: MessageStore, keyAgreement: any StaticKeyAgreement, dataDirectory: String, watching: [PeerAddress] = [],
                logger: Logger) throws(SpoolFileError) {
        self.store = store
        self.keyAgreement = keyAgreement
        ledger = try SpoolLedger(path: dataDirectory + "/" + SpoolLedger.fileName)
        watched = watching.filter { if case .spool = $0.location { true } else { false } }
        self.logger = logger
    }

    // MARK: shared directories

    /// Starts a watcher per `spool://` peer. `stored` is called with each sender whose
    /// messages were stored.
    func startWatching(stored: @escaping @Sendable (PublicKey) -> Void) {
        // The peer's key recurs in every envelope: remember its ECDH (see RecurringKeyCache).
        let key = RecurringKeyCache(keyAgreement)
        for address in watched {
            let watcher: SpoolWatcher
            do {
                watcher = try SpoolWatcher(address: address, importer: SpoolImporter(localKey: key, ledger: ledger, logger: logger),
                                           exporter: try SpoolExporter(localKey: key), logger: logger)
            } catch {
                logger.error("msgd: cannot keep \(address): \(error)")
                continue
            }
            let peer = address.nodeID
            logger.info("msgd: keeping the spool directory \(watcher.directory) with \(peer)")
            let task = Task.detached {
                await watcher.run(
                    clock: {
                        let now = Date().timeIntervalSince1970
                        return (UInt64(max(0, now)), UInt64(max(0, now * 1_000)))
                    },
                    outgoing: { try self.watchOutgoing(to: peer) },
                    alreadyReceived: { sender, message in self.held(sender, message) },
                    deliver: { bundle in
                        let taken = try self.take(bundle, receivedAt: Date())
                        for sender in taken.storedFrom { stored(sender) }
                    })
            }
            watchers.withLock { $0.append(task) }
        }
    }

    func stopWatching() {
        for task in watchers.withLock({ $0 }) { task.cancel() }
    }

    private func held(_ sender: PublicKey, _ message: EnvelopeMessage) -> Bool {
        guard ReceivedCheck(store: store).contains(from: sender, seq: message.seq, id: message.id) else { return false }
        replayedFrom.withLock { _ = $0.insert(sender) }
        return true
    }

    /// What a watcher writes for `peer` this round: a receipt if one is owed, then the messages
    /// not yet written, or, once `watchRetry` has passed without a receipt, everything still
    /// owed again (a shared directory may lose files like any other link).
    func watchOutgoing(to peer: PublicKey, now: Date = Date()) throws(SpoolLinkError) -> [EnvelopeRecord] {
        let clock = ContinuousClock.now
        let after = watchProgress.withLock { progress -> UInt64 in
            var entry = progress[peer] ?? WatchProgress()
            if let last = entry.lastFull, clock - last < Self.watchRetry { return entry.sentThrough }
            entry.lastFull = clock
            progress[peer] = entry
            return 0
        }
        let receipt: SpoolReceiptOwed?
        let page: [StoredOutgoing]
        do throws(StoreError) {
            for sender in replayedFrom.withLock({ set -> Set<PublicKey> in defer { set = [] }; return set }) {
                try store.noteSpoolReceiptOwed(to: sender)
            }
            receipt = try store.spoolReceiptsOwed(only: peer).first
            page = try store.undelivered(to: peer, afterSeq: after, limit: Self.watchPageMessages)
        } catch {
            throw .store(error)
        }
        var records: [EnvelopeRecord] = []
        let nowSeconds = UInt64(max(0, now.timeIntervalSince1970))
        do throws(EnvelopeRecordError) {
            if let receipt { records.append(.receipt(try EnvelopeReceipt(delivered: [], throughSeq: receipt.throughSeq))) }
            for message in page where (message.expiresAt ?? .distantFuture) > now {
                records.append(.message(try Self.record(for: message, nowSeconds: nowSeconds)))
            }
        } catch {
            throw .record(error)
        }
        do throws(StoreError) {
            if let last = page.last {
                try store.markSent(to: peer, afterSeq: after, throughSeq: last.seq, link: Self.linkName)
                watchProgress.withLock { $0[peer, default: WatchProgress()].sentThrough = last.seq }
            }
            if let receipt { try store.recordSpoolReceiptExported(to: peer, throughSeq: receipt.throughSeq) }
        } catch {
            throw .store(error)
        }
        return records
    }

    /// Answers a `spoolExport` or `spoolImport` request off the caller's thread. `stored` is
    /// called with each sender whose messages were stored, so msgd can wake `recv` waiters.
    func handle(_ message: BusMessage, _ responder: BusResponder, stored: @escaping @Sendable (PublicKey) -> Void) {
        do throws(WireError) {
            switch MessageMethod(rawValue: message.method) {
            case .spoolExport:
                let request = try SpoolExportRequest.decode(message.payload)
                queue.async {
                    do throws(SpoolLinkError) {
                        responder.reply(try self.export(request).encoded())
                    } catch {
                        self.logger.warning("msgd: spool export to \(request.directory) failed: \(error)")
                        responder.fail(code: error.code.rawValue, message: error.description)
                    }
                }
            case .spoolImport:
                let request = try SpoolImportRequest.decode(message.payload)
                queue.async {
                    do throws(SpoolLinkError) {
                        responder.reply(try self.importBundles(request, stored: stored).encoded())
                    } catch {
                        self.logger.warning("msgd: spool import from \(request.directory) failed: \(error)")
                        responder.fail(code: error.code.rawValue, message: error.description)
                    }
                }
            default:
                responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "the spool link has no method \(message.method)")
            }
        } catch {
            responder.fail(code: RPCErrorCode.invalidRequest.rawValue, message: "malformed spool request: \(error)")
        }
    }

    // MARK: export

    /// Writes bundles for `request.peer`, or for every node that is owed messages or a receipt.
    func export(_ request: SpoolExportRequest, now: Date = Date()) throws(SpoolLinkError) -> SpoolExportReply {
        try Self.checkDirectory(request.directory, writable: true)
        let exporter: SpoolExporter
        do throws(SpoolExportError) {
            exporter = try SpoolExporter(localKey: RecurringKeyCache(keyAgreement))
        } catch {
            throw .export(error)
        }
        let nowSeconds = UInt64(max(0, now.timeIntervalSince1970))
        let nowMillis = UInt64(max(0, now.timeIntervalSince1970 * 1_000))
        let receipts: [SpoolReceiptOwed]
        var recipients: [PublicKey]
        do throws(StoreError) {
            receipts = try store.spoolReceiptsOwed(only: request.peer)
            if let peer = request.peer {
                recipients = [peer]
            } else {
                recipients = try store.recipientsWithUndelivered()
                for receipt in receipts where !recipients.contains(receipt.node) { recipients.append(receipt.node) }
            }
        } catch {
            throw .store(error)
        }
        var reply = SpoolExportReply(files: [], messages: 0, receipts: 0, peers: 0)
        // Each page is its own `export` call, whose part numbers restart at 0: one more
        // millisecond per call keeps file names sorting in sequence order, the order an
        // importer takes them (and so the order `recv` shows the messages).
        var fileMillis = nowMillis
        for recipient in recipients {
            var pending: [EnvelopeRecord] = []
            let receipt = receipts.first { $0.node == recipient }
            if let receipt {
                do throws(EnvelopeRecordError) {
                    pending.append(.receipt(try EnvelopeReceipt(delivered: [], throughSeq: receipt.throughSeq)))
                } catch {
                    throw .record(error)
                }
            }
            var wroteAny = false
            var after: UInt64 = 0
            var limit = 1_000
            while true {
                let page: [StoredOutgoing]
                do throws(StoreError) {
                    page = try store.undelivered(to: recipient, afterSeq: after, limit: limit)
                } catch {
                    throw .store(error)
                }
                let live = page.filter { ($0.expiresAt ?? .distantFuture) > now }
                for message in live {
                    do throws(EnvelopeRecordError) {
                        pending.append(.message(try Self.record(for: message, nowSeconds: nowSeconds)))
                    } catch {
                        throw .record(error)
                    }
                }
                if !pending.isEmpty {
                    let written: [SpoolWrittenBundle]
                    do throws(SpoolExportError) {
                        written = try exporter.export(pending, to: recipient, directory: request.directory, nowMillis: fileMillis)
                        fileMillis += 1
                    } catch {
                        throw .export(error)
                    }
                    reply.files += written.map(\.fileName)
                    reply.messages += UInt32(live.count)
                    wroteAny = true
                    pending = []
                }
                guard let last = page.last else { break }
                if !live.isEmpty {
                    do throws(StoreError) {
                        // `status` then says "sent over spool" until the receipt comes back.
                        try store.markSent(to: recipient, afterSeq: after, throughSeq: last.seq, link: Self.linkName)
                    } catch {
                        throw .store(error)
                    }
                }
                guard page.count == limit else { break }
                after = last.seq
                let averageSize = max(64, page.reduce(0) { $0 + $1.payload.count } / page.count)
                limit = max(1, min(Self.exportPageMessages, Self.exportPageBytes / averageSize))
            }
            if let receipt, wroteAny {
                do throws(StoreError) {
                    try store.recordSpoolReceiptExported(to: recipient, throughSeq: receipt.throughSeq)
                } catch {
                    throw .store(error)
                }
                reply.receipts += 1
            }
            if wroteAny { reply.peers += 1 }
        }
        logger.info("msgd: spool export to \(request.directory): \(reply.files.count) bundles, \(reply.messages) messages, \(reply.receipts) receipts")
        return reply
    }

    static func record(for message: StoredOutgoing, nowSeconds: UInt64) throws(EnvelopeRecordError) -> EnvelopeMessage {
        let created = UInt64(max(0, message.createdAt.timeIntervalSince1970))
        let expiry = message.expiresAt.map { UInt64(max(0, $0.timeIntervalSince1970)) } ?? nowSeconds + lifetimeWithoutExpiry
        return try EnvelopeMessage(id: message.id, created: created, expiry: max(expiry, created), type: message.type,
                                   body: message.payload, seq: message.seq)
    }

    // MARK: import

    func importBundles(_ request: SpoolImportRequest, now: Date = Date(),
                       stored: @Sendable (PublicKey) -> Void = { _ in }) throws(SpoolLinkError) -> SpoolImportReply {
        try Self.checkDirectory(request.directory, writable: false)
        let importer = SpoolImporter(localKey: RecurringKeyCache(keyAgreement), ledger: ledger, logger: logger)
        var reply = SpoolImportReply()
        var storedFrom: [PublicKey] = []
        // Senders of messages we already hold: they re-exported because our receipt has not
        // reached them, so they are owed one again.
        var replayedFrom: Set<PublicKey> = []
        let received = ReceivedCheck(store: store)
        let report: SpoolImportReport
        do throws(SpoolImportError) {
            report = try importer.importDirectory(
                request.directory, now: UInt64(max(0, now.timeIntervalSince1970)),
                alreadyReceived: { sender, message in
                    guard received.contains(from: sender, seq: message.seq, id: message.id) else { return false }
                    replayedFrom.insert(sender)
                    return true
                }
            ) { bundle in
                let result = try self.take(bundle, receivedAt: now)
                received.refresh()
                reply.messagesStored += UInt32(result.stored)
                reply.duplicates += UInt32(result.duplicates)
                reply.receipts += UInt32(result.receipts)
                for sender in result.storedFrom where !storedFrom.contains(sender) { storedFrom.append(sender) }
            }
        } catch {
            // Bundles taken in before the failure stay taken in; wake their readers.
            for sender in storedFrom { stored(sender) }
            throw .importFailed(error)
        }
        for sender in storedFrom { stored(sender) }
        for sender in replayedFrom {
            do throws(StoreError) {
                try store.noteSpoolReceiptOwed(to: sender)
            } catch {
                throw .store(error)
            }
        }
        reply.moreWaiting = report.moreWaiting
        for outcome in report.outcomes {
            switch outcome {
            case let .imported(_, name, _, rejected):
                reply.bundlesImported += 1
                reply.envelopesRejected += UInt32(rejected.count)
                // Messages held already are listed as one line per file, not one per message:
                // a bundle imported again after a crash holds nothing else.
                var held = 0
                for rejection in rejected {
                    if case .alreadyReceived = rejection.problem {
                        held += 1
                    } else if reply.problems.count < SpoolImportReply.maximumProblems {
                        reply.problems.append(rejection.description)
                    }
                }
                reply.duplicates += UInt32(held)
                if held > 0 { reply.problems.append("\(held) envelopes of \(name) were rejected: their messages were received before (replayed or resent)") }
            case .alreadyDone: reply.bundlesAlreadyImported += 1
            case .forAnotherNode:
                reply.bundlesForAnotherNode += 1
                reply.problems.append(outcome.description)
            case .rejected, .unreadable:
                reply.filesRejected += 1
                reply.problems.append(outcome.description)
            }
        }
        // Every refusal is in the log; the reply carries the first few.
        reply.problems = Array(reply.problems.prefix(SpoolImportReply.maximumProblems))
        logger.info("msgd: spool import from \(request.directory): \(reply.bundlesImported) bundles, \(reply.messagesStored) messages stored, \(reply.duplicates) duplicates, \(reply.receipts) receipts, \(reply.filesRejected) files and \(reply.envelopesRejected) envelopes rejected")
        return reply
    }

    struct Taken {
        var stored = 0
        var duplicates = 0
        var receipts = 0
        var storedFrom: [PublicKey] = []
    }

    /// Stores one bundle's messages (one transaction per sender; a writer puts one sender in
    /// a bundle) and applies its receipts. A crash before the importer records the bundle
    /// imports it again, and the store drops what it holds by sequence number.
    private func take(_ bundle: SpoolImportedBundle, receivedAt: Date) throws(StoreError) -> Taken {
        var taken = Taken()
        var order: [PublicKey] = []
        var messages: [PublicKey: [(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])]] = [:]
        for item in bundle.records {
            switch item.record {
            case let .message(message):
                if messages[item.sender] == nil { order.append(item.sender) }
                messages[item.sender, default: []].append((message.id, message.seq, message.type, message.body))
            case let .receipt(receipt):
                // The receipt's sender is authenticated by its envelope, and both marks apply
                // only to messages we sent to that node: a receipt counts only from the recipient.
                if let through = receipt.throughSeq { try store.markDelivered(to: item.sender, throughSeq: through) }
                if !receipt.delivered.isEmpty { try store.markDelivered(ids: receipt.delivered, to: item.sender) }
                taken.receipts += 1
            }
        }
        for sender in order {
            let all = messages[sender] ?? []
            var start = 0
            while start < all.count {
                let end = min(all.count, start + MessageStore.maxBatchCount)
                let result = try store.storeIncoming(from: sender, messages: Array(all[start..<end]), receivedAt: receivedAt)
                taken.stored += result.stored.count
                taken.duplicates += result.duplicates
                if !result.stored.isEmpty, !taken.storedFrom.contains(sender) { taken.storedFrom.append(sender) }
                start = end
            }
            try store.noteSpoolReceiptOwed(to: sender)
        }
        return taken
    }

    // MARK: checks

    private static func checkDirectory(_ path: String, writable: Bool) throws(SpoolLinkError) {
        guard !path.isEmpty else { throw .directory(path: path, reason: "no directory was given") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .directory(path: path, reason: "there is no such directory")
        }
        guard isDirectory.boolValue else { throw .directory(path: path, reason: "it is not a directory") }
        guard access(path, writable ? (R_OK | W_OK | X_OK) : (R_OK | X_OK)) == 0 else {
            throw .directory(path: path, reason: writable ? "this node may not write into it" : "this node may not read it")
        }
    }
}

/// Why a spool export or import failed as a whole, in one sentence.
public enum SpoolLinkError: Error, Sendable, CustomStringConvertible {
    case directory(path: String, reason: String)
    case store(StoreError)
    case record(EnvelopeRecordError)
    case export(SpoolExportError)
    case importFailed(SpoolImportError)

    var code: RPCErrorCode {
        switch self {
        case .directory: .invalidRequest
        case .store: .storage
        case .record, .export, .importFailed: .internalError
        }
    }

    public var description: String {
        switch self {
        case let .directory(path, reason): "cannot use the spool directory \(path): \(reason)"
        case let .store(error): "the message store failed: \(error)"
        case let .record(error): "cannot build an envelope record: \(error)"
        case let .export(error): "the export failed: \(error)"
        case let .importFailed(error): "the import stopped: \(error)"
        }
    }
}

/// The node key for one export or import, remembering ECDH results with keys that recur.
///
/// Each envelope costs two ECDHs with the node key through keyd (a bus round trip each): one
/// with a fresh ephemeral key, one with the other node's static key, which is the same for
/// every envelope of a bundle. Remembering the second halves an import's round trips and
/// leaves an export one in all. A point is remembered from its second use (ephemeral keys never
/// have one), within bounds, and only for the one operation: the secrets live in msgd's
/// memory no longer than the envelopes' plaintext already does.
final class RecurringKeyCache: StaticKeyAgreement {
    static let recentLimit = 4_096
    static let rememberedLimit = 256

    let publicKey: PublicKey
    private let base: any StaticKeyAgreement
    private let state = Mutex(State())

    private struct State {
        var recent: Set<PublicKey> = []
        var remembered: [PublicKey: [UInt8]] = [:]
    }

    init(_ base: any StaticKeyAgreement) {
        self.base = base
        publicKey = base.publicKey
    }

    func sharedSecret(with point: PublicKey) throws -> [UInt8] {
        let seenBefore = state.withLock { state -> (secret: [UInt8]?, recent: Bool) in
            if let secret = state.remembered[point] { return (secret, true) }
            if state.recent.contains(point) { return (nil, true) }
            // Ephemeral keys pass through here once each; forget them in bulk.
            if state.recent.count >= Self.recentLimit { state.recent.removeAll(keepingCapacity: true) }
            state.recent.insert(point)
            return (nil, false)
        }
        if let secret = seenBefore.secret { return secret }
        let secret = try base.sharedSecret(with: point)
        if seenBefore.recent {
            state.withLock { state in
                if state.remembered.count < Self.rememberedLimit { state.remembered[point] = secret }
            }
        }
        return secret
    }
}
