import LNPCrypto
import LNPSession
import Logging

/// One record taken in from a bundle, with who sealed it (authenticated by the envelope).
public struct SpoolImportedRecord: Sendable, Equatable {
    public let sender: PublicKey
    public let record: EnvelopeRecord
    /// The envelope's position in its bundle.
    public let index: Int
}

/// The usable contents of one bundle, handed to the caller before the bundle is recorded as
/// imported.
public struct SpoolImportedBundle: Sendable {
    public let id: SpoolBundleID
    public let fileName: String
    public let records: [SpoolImportedRecord]
}

/// One envelope of a bundle that was not taken in, and why.
public struct SpoolEnvelopeRejection: Sendable, Equatable, CustomStringConvertible {
    public let fileName: String
    public let index: Int
    public let problem: SpoolEnvelopeProblem

    public var description: String { "envelope \(index) of \(fileName) was rejected: \(problem)" }
}

/// What happened to one bundle file.
public enum SpoolBundleOutcome: Sendable, Equatable, CustomStringConvertible {
    /// Its usable records were delivered; `rejected` lists the envelopes that were not.
    case imported(id: SpoolBundleID, fileName: String, delivered: Int, rejected: [SpoolEnvelopeRejection])
    /// The ledger already holds its id (imported before, or written by this node).
    case alreadyDone(id: SpoolBundleID, fileName: String)
    /// Its first envelope is sealed to another node key: the bundle is not for us.
    case forAnotherNode(id: SpoolBundleID, fileName: String)
    /// The file as a whole was refused; nothing in it was used.
    case rejected(fileName: String, reason: SpoolBundleError)
    /// The file could not be read.
    case unreadable(fileName: String, reason: SpoolFileError)

    public var fileName: String {
        switch self {
        case let .imported(_, name, _, _), let .alreadyDone(_, name), let .forAnotherNode(_, name),
             let .rejected(name, _), let .unreadable(name, _): name
        }
    }

    public var description: String {
        switch self {
        case let .imported(id, name, delivered, rejected):
            "bundle \(name) (\(id)): \(delivered) records taken in, \(rejected.count) envelopes rejected"
        case let .alreadyDone(id, name): "bundle \(name) (\(id)) was already imported or is our own; skipped"
        case let .forAnotherNode(id, name): "bundle \(name) (\(id)) is sealed to another node; skipped"
        case let .rejected(name, reason): "bundle \(name) was rejected: \(reason)"
        case let .unreadable(name, reason): "bundle \(name) was not read: \(reason)"
        }
    }
}

/// What one pass over a directory did, bundle by bundle.
public struct SpoolImportReport: Sendable, Equatable {
    public var outcomes: [SpoolBundleOutcome] = []
    /// More bundle files were present than one pass takes; the next pass takes them.
    public var moreWaiting = false

    public var deliveredCount: Int {
        outcomes.reduce(0) { if case let .imported(_, _, delivered, _) = $1 { $0 + delivered } else { $0 } }
    }

    public var rejectedEnvelopes: [SpoolEnvelopeRejection] {
        outcomes.flatMap { outcome -> [SpoolEnvelopeRejection] in
            if case let .imported(_, _, _, rejected) = outcome { return rejected }
            return []
        }
    }
}

/// Limits on what one import reads; every byte of a bundle is untrusted.
public struct SpoolImportLimits: Sendable {
    /// Bundle files read whole per pass (sorted by name, so oldest first); bundles the
    /// ledger already holds cost a header read and are not counted.
    public var bundlesPerPass = 1_000
    /// Bundle names read from the directory per pass; a directory flooded with more is
    /// taken a slice at a time.
    public var directoryEntries = 100_000
    /// The largest bundle file read; never above `SpoolBundle.maximumLength`.
    public var bundleLength = SpoolBundle.maximumLength
    /// The largest envelope opened; never above `SealedEnvelope.maximumLength`.
    public var envelopeLength = SealedEnvelope.maximumLength

    public init() {}
}

/// Takes in the bundles of a directory: checks each file whole before using anything, opens
/// its envelopes with the node key (ECDH in parallel), decodes the records, and hands them to
/// the caller (msgd), which stores them and deduplicates by message id. A bundle is recorded
/// in the ledger only after the caller has taken its records, so a crash in between imports
/// it again, which msgd's dedup makes harmless.
///
/// A pass blocks its thread while it reads files and does ECDH: call it from a thread of
/// its own, not from a task of the concurrency pool (see `SpoolWatcher.run`).
public struct SpoolImporter: Sendable {
    public let localKey: any StaticKeyAgreement
    public let ledger: SpoolLedger
    public let limits: SpoolImportLimits
    private let logger: Logger

    public init(localKey: any StaticKeyAgreement, ledger: SpoolLedger, limits: SpoolImportLimits = SpoolImportLimits(),
                logger: Logger = Logger(label: "lnp.spool")) {
        self.localKey = localKey
        self.ledger = ledger
        self.limits = limits
        self.logger = logger
    }

    /// Whether a directory entry is a bundle: temporary files of a writer (dot names) and
    /// anything without the bundle extension are not.
    public static func isBundleName(_ name: String) -> Bool {
        !name.hasPrefix(".") && name.hasSuffix(SpoolBundle.fileExtension) && name.utf8.count > SpoolBundle.fileExtension.utf8.count
    }

    /// One pass over `directory`. `now` (unix seconds) drops expired messages. `deliver`
    /// gets each bundle's records; when it throws, the pass stops and that bundle stays
    /// unrecorded. `onlyFrom` rejects envelopes sealed by anyone else (a shared directory is
    /// the link with one peer); `skipping` names files a watcher has already judged.
    /// `alreadyReceived` asks the caller's store whether it holds a message from this sender
    /// (msgd checks the message's sequence number, or its id when it has none): such a
    /// message is a replay from an earlier pass and is rejected with that reason.
    /// `removeImported` deletes bundle files once recorded (a shared directory
    /// is a mailbox; a carried stick is usually left as it is).
    public func importDirectory(
        _ directory: String, now: UInt64, removeImported: Bool = false,
        onlyFrom sender: PublicKey? = nil, skipping judged: Set<String> = [],
        alreadyReceived: (_ sender: PublicKey, _ message: EnvelopeMessage) -> Bool = { _, _ in false },
        deliver: (SpoolImportedBundle) throws -> Void
    ) throws(SpoolImportError) -> SpoolImportReport {
        let listing: (names: [String], more: Bool)
        do throws(SpoolFileError) {
            listing = try SpoolFiles.list(directory, limit: limits.directoryEntries, keep: { Self.isBundleName($0) && !judged.contains($0) })
        } catch {
            throw .file(error)
        }
        var report = SpoolImportReport(moreWaiting: listing.more)
        // Replays within one pass are caught here; across passes through `alreadyReceived`.
        var seen = Set<MessageKey>()
        var read = 0
        // Oldest first (names sort by time). Bundles already done cost a header read and do
        // not count against the pass, so a stick full of old bundles still reaches new ones.
        for name in listing.names {
            guard read < limits.bundlesPerPass else {
                report.moreWaiting = true
                break
            }
            let outcome = try importBundle(directory: directory, name: name, now: now, onlyFrom: sender, seen: &seen,
                                           alreadyReceived: alreadyReceived, deliver: deliver)
            log(outcome)
            if case .alreadyDone = outcome {} else { read += 1 }
            // Only what this pass took in: a bundle found in the ledger may be our own, which
            // is the peer's to delete.
            if removeImported, case .imported = outcome { try? SpoolFiles.remove(directory + "/" + name) }
            report.outcomes.append(outcome)
        }
        return report
    }

    struct MessageKey: Hashable {
        let sender: PublicKey
        let id: [UInt8]
    }

    private func importBundle(
        directory: String, name: String, now: UInt64, onlyFrom expectedSender: PublicKey?, seen: inout Set<MessageKey>,
        alreadyReceived: (PublicKey, EnvelopeMessage) -> Bool,
        deliver: (SpoolImportedBundle) throws -> Void
    ) throws(SpoolImportError) -> SpoolBundleOutcome {
        let path = directory + "/" + name
        let bundleLimit = min(limits.bundleLength, SpoolBundle.maximumLength)
        let bytes: [UInt8]
        do throws(SpoolFileError) {
            // The header first: a bundle already taken in costs 29 bytes of reading.
            let header = try SpoolFiles.readFile(path: path, limit: SpoolBundle.headerLength, whole: false)
            if let id = try? SpoolBundle.header(header[...]).id, ledger.contains(id) { return .alreadyDone(id: id, fileName: name) }
            bytes = try SpoolFiles.readFile(path: path, limit: bundleLimit, whole: true)
        } catch {
            if case let .tooLarge(_, size, limit) = error { return .rejected(fileName: name, reason: .tooLarge(length: size, limit: limit)) }
            return .unreadable(fileName: name, reason: error)
        }
        let parsed: SpoolBundle.Parsed
        do throws(SpoolBundleError) {
            parsed = try SpoolBundle.parse(bytes, maximumLength: bundleLimit)
        } catch {
            return .rejected(fileName: name, reason: error)
        }
        if ledger.contains(parsed.id) { return .alreadyDone(id: parsed.id, fileName: name) }

        let opened = open(bytes, parsed.envelopeRanges)
        // Our key service failing says nothing about the bundle: stop, record nothing, and let
        // the next pass try again, rather than report good envelopes as rejected.
        for case let .failure(.envelope(.keyAgreementFailed(reason))) in opened {
            throw .keyAgreementFailed(bundle: parsed.id, reason: reason)
        }
        if case .failure(.envelope(.notForThisNode)) = opened.first {
            return .forAnotherNode(id: parsed.id, fileName: name)
        }
        var records = [SpoolImportedRecord]()
        var rejected = [SpoolEnvelopeRejection]()
        for (index, result) in opened.enumerated() {
            switch result {
            case let .failure(error):
                rejected.append(SpoolEnvelopeRejection(fileName: name, index: index, problem: error))
            case let .success(item):
                if let expectedSender, item.sender != expectedSender {
                    rejected.append(SpoolEnvelopeRejection(fileName: name, index: index, problem: .unexpectedSender(item.sender)))
                    continue
                }
                if case let .message(message) = item.record {
                    if message.hasExpired(at: now) {
                        rejected.append(SpoolEnvelopeRejection(fileName: name, index: index,
                                                               problem: .expired(messageID: message.id, expiry: message.expiry, now: now)))
                        continue
                    }
                    guard !alreadyReceived(item.sender, message) else {
                        rejected.append(SpoolEnvelopeRejection(fileName: name, index: index, problem: .alreadyReceived(messageID: message.id)))
                        continue
                    }
                    guard seen.insert(MessageKey(sender: item.sender, id: message.id)).inserted else {
                        rejected.append(SpoolEnvelopeRejection(fileName: name, index: index, problem: .duplicate(messageID: message.id)))
                        continue
                    }
                }
                records.append(SpoolImportedRecord(sender: item.sender, record: item.record, index: index))
            }
        }
        do {
            try deliver(SpoolImportedBundle(id: parsed.id, fileName: name, records: records))
        } catch {
            throw .deliveryFailed(bundle: parsed.id, reason: String(describing: error))
        }
        do throws(SpoolFileError) {
            try ledger.record(parsed.id)
        } catch {
            throw .file(error)
        }
        return .imported(id: parsed.id, fileName: name, delivered: records.count, rejected: rejected)
    }

    private struct Opened: Sendable {
        let sender: PublicKey
        let record: EnvelopeRecord
    }

    /// Opens the first envelope alone: if it is sealed to another node the bundle is someone
    /// else's (a writer puts one recipient per bundle) and the rest is not worth an ECDH each.
    private func open(_ bytes: [UInt8], _ ranges: [Range<Int>]) -> [Result<Opened, SpoolEnvelopeProblem>] {
        let localKey = self.localKey
        let envelopeLimit = min(limits.envelopeLength, SealedEnvelope.maximumLength)
        let openOne: @Sendable (Int) -> Result<Opened, SpoolEnvelopeProblem> = { index in
            let envelope = Array(bytes[ranges[index]])
            let opened: SealedEnvelope.Opened
            do throws(SealedEnvelopeError) {
                opened = try SealedEnvelope.open(envelope, with: localKey, maximumLength: envelopeLimit)
            } catch {
                return .failure(.envelope(error))
            }
            do throws(EnvelopeRecordError) {
                return .success(Opened(sender: opened.sender, record: try EnvelopeRecord.decode(opened.payload)))
            } catch {
                return .failure(.record(error))
            }
        }
        let first = openOne(0)
        if case .failure(.envelope(.notForThisNode)) = first { return [first] }
        return [first] + ParallelMap.map(count: ranges.count - 1) { openOne($0 + 1) }
    }

    private func log(_ outcome: SpoolBundleOutcome) {
        switch outcome {
        case let .imported(_, _, _, rejected):
            logger.info("\(outcome)")
            for rejection in rejected { logger.warning("\(rejection)") }
        case .alreadyDone: logger.debug("\(outcome)")
        case .forAnotherNode: logger.info("\(outcome)")
        case .rejected, .unreadable: logger.warning("\(outcome)")
        }
    }
}
