import Dispatch
import LNPCrypto
import LNPSession
import LNPTransport
import Logging
import Synchronization

/// What one round of a watcher did.
public struct SpoolWatchRound: Sendable, Equatable {
    public var imported: SpoolImportReport
    public var written: [SpoolWrittenBundle]
    /// Export was skipped because the peer has not yet taken this many of our bundles.
    public var exportHeldBack: Bool
}

/// Keeps a `spool://NODEID@/path` link: a directory shared with one peer (a synced folder,
/// a network share) that both nodes poll. Each round takes in the peer's bundles addressed
/// to us (and deletes them: the directory is a mailbox), then writes what msgd has for the
/// peer. Both nodes write into the same directory; each recognises its own bundles by id in
/// its ledger, and the other's sealed to someone else by one ECDH.
///
/// Bounded: one round reads at most `SpoolImportLimits.bundlesPerPass` bundles, remembers at
/// most `judgedLimit` refused file names (so a damaged file is read once, not every round),
/// and writes nothing while `ownBundlesWaiting` of our bundles still wait for the peer.
public final class SpoolWatcher: Sendable {
    public static let defaultPollInterval = Duration.seconds(2)
    public static let judgedLimit = 10_000
    /// Seconds after which a temporary bundle file is taken to be left by a crashed writer.
    public static let staleTemporaryAge = 3_600

    public let directory: String
    public let peer: PublicKey
    public let importer: SpoolImporter
    public let exporter: SpoolExporter
    public let ownBundlesWaiting: Int
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        /// Files refused or for another node: not read again.
        var judged: Set<String> = []
        /// Our bundles the peer has not yet taken (deleted).
        var ours: [String] = []
    }

    public enum Failure: Error, CustomStringConvertible {
        case notASpoolAddress(String)
        case importFailed(SpoolImportError)
        case exportFailed(SpoolExportError)
        case outgoingFailed(String)

        public var description: String {
            switch self {
            case let .notASpoolAddress(address): "\(address) is not a spool:// address"
            case let .importFailed(error): "spool import failed: \(error)"
            case let .exportFailed(error): "spool export failed: \(error)"
            case let .outgoingFailed(reason): "collecting messages for the spool failed: \(reason)"
            }
        }
    }

    /// `importer` and `exporter` must share the ledger, so our own bundles are skipped.
    public init(address: PeerAddress, importer: SpoolImporter, exporter: SpoolExporter, ownBundlesWaiting: Int = 16,
                logger: Logger = Logger(label: "lnp.spool.watch")) throws(Failure) {
        guard case let .spool(path) = address.location else { throw .notASpoolAddress(address.description) }
        directory = path
        peer = address.nodeID
        self.importer = importer
        self.exporter = exporter
        self.ownBundlesWaiting = max(1, ownBundlesWaiting)
        self.logger = logger
    }

    /// One round. `outgoing` yields the records msgd has not yet put on this link (it marks
    /// them as sent; it resends after its own retry interval, like after a reconnect);
    /// it is only called when the peer is keeping up. `alreadyReceived` is the importer's
    /// question to msgd's store (see `SpoolImporter.importDirectory`).
    public func poll(
        now: UInt64, nowMillis: UInt64,
        outgoing: () throws -> [EnvelopeRecord],
        alreadyReceived: (_ sender: PublicKey, _ message: EnvelopeMessage) -> Bool = { _, _ in false },
        deliver: (SpoolImportedBundle) throws -> Void
    ) throws(Failure) -> SpoolWatchRound {
        // What a writer that died left behind; old enough that no writer is still at it.
        SpoolFiles.removeTemporaries(in: directory, olderThan: Self.staleTemporaryAge)
        let judged = state.withLock { $0.judged }
        let report: SpoolImportReport
        do throws(SpoolImportError) {
            report = try importer.importDirectory(directory, now: now, removeImported: true, onlyFrom: peer,
                                                  skipping: judged, alreadyReceived: alreadyReceived, deliver: deliver)
        } catch {
            throw .importFailed(error)
        }
        let waiting = state.withLock { state in
            for outcome in report.outcomes {
                switch outcome {
                case .rejected, .forAnotherNode:
                    if state.judged.count >= Self.judgedLimit { state.judged.removeAll() }
                    state.judged.insert(outcome.fileName)
                case .imported, .alreadyDone, .unreadable: break
                }
            }
            state.ours.removeAll { !SpoolFiles.exists(directory + "/" + $0) }
            return state.ours.count
        }
        guard waiting < ownBundlesWaiting else {
            return SpoolWatchRound(imported: report, written: [], exportHeldBack: true)
        }
        let records: [EnvelopeRecord]
        do {
            records = try outgoing()
        } catch {
            throw .outgoingFailed(String(describing: error))
        }
        var written = [SpoolWrittenBundle]()
        if !records.isEmpty {
            do throws(SpoolExportError) {
                written = try exporter.export(records, to: peer, directory: directory, nowMillis: nowMillis, ledger: importer.ledger)
            } catch {
                throw .exportFailed(error)
            }
            state.withLock { $0.ours += written.map(\.fileName) }
        }
        return SpoolWatchRound(imported: report, written: written, exportHeldBack: false)
    }

    /// Polls every `interval` until the task is cancelled. A failed round is logged and the
    /// next one tries again (the directory may be a share that comes and goes).
    ///
    /// Each round runs on a Dispatch thread, not in the task: a round blocks while it opens
    /// envelopes, and a node key in keyd (`RemoteKeyAgreement`) blocks its thread until a
    /// task of the concurrency pool brings keyd's answer, so blocking pool threads here could
    /// starve that task of the threads it needs.
    public func run(
        interval: Duration = SpoolWatcher.defaultPollInterval,
        clock: @escaping @Sendable () -> (seconds: UInt64, millis: UInt64),
        outgoing: @escaping @Sendable () throws -> [EnvelopeRecord],
        alreadyReceived: @escaping @Sendable (_ sender: PublicKey, _ message: EnvelopeMessage) -> Bool = { _, _ in false },
        deliver: @escaping @Sendable (SpoolImportedBundle) throws -> Void
    ) async {
        while !Task.isCancelled {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    self.round(clock: clock, outgoing: outgoing, alreadyReceived: alreadyReceived, deliver: deliver)
                    continuation.resume()
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    private func round(
        clock: () -> (seconds: UInt64, millis: UInt64), outgoing: () throws -> [EnvelopeRecord],
        alreadyReceived: (PublicKey, EnvelopeMessage) -> Bool, deliver: (SpoolImportedBundle) throws -> Void
    ) {
        let now = clock()
        do {
            _ = try poll(now: now.seconds, nowMillis: now.millis, outgoing: outgoing, alreadyReceived: alreadyReceived, deliver: deliver)
        } catch {
            logger.warning("\(error)")
        }
    }
}
