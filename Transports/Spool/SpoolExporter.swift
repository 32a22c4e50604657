import LNPCrypto
import LNPSession

/// A bundle file that was written completely.
public struct SpoolWrittenBundle: Sendable, Equatable {
    public let id: SpoolBundleID
    public let fileName: String
    public let envelopeCount: Int
    public let byteCount: Int
}

/// Writes sealed envelopes for one peer into a directory as bundle files: many envelopes per
/// file (10,000 messages are one file, not 10,000), each file written whole or not at all.
///
/// There is no separate on-disk outbox: msgd's store already holds every message until a
/// receipt settles it, so a message to a peer with no address simply waits there for the
/// next export, and the spool is only ever a copy.
public struct SpoolExporter: Sendable {
    /// Bundles are split beyond this; a single envelope larger than it goes alone in its bundle.
    public static let defaultBundleLimit = 32 << 20
    /// The smallest split size accepted (a satellite uplink may want small files).
    public static let minimumBundleLimit = 64 << 10

    public let localKey: any StaticKeyAgreement
    public let bundleLimit: Int

    public init(localKey: any StaticKeyAgreement, bundleLimit: Int = SpoolExporter.defaultBundleLimit) throws(SpoolExportError) {
        let largestTarget = SpoolBundle.maximumLength - SealedEnvelope.maximumLength - SpoolBundle.headerLength - SpoolBundle.checksumLength
        guard (Self.minimumBundleLimit...largestTarget).contains(bundleLimit) else {
            throw .badLimit("the bundle split size must be between \(Self.minimumBundleLimit) and \(largestTarget) bytes, not \(bundleLimit)")
        }
        self.localKey = localKey
        self.bundleLimit = bundleLimit
    }

    /// Seals each record to `recipient` (in parallel: each seal is one ECDH with the node key
    /// and one with a fresh ephemeral key) and writes them as bundles into `directory`.
    /// `ledger`, when given, records the written bundles so that this node's own importer
    /// skips them in a shared directory.
    public func export(
        _ records: [EnvelopeRecord], to recipient: PublicKey, directory: String,
        nowMillis: UInt64, ledger: SpoolLedger? = nil
    ) throws(SpoolExportError) -> [SpoolWrittenBundle] {
        let localKey = self.localKey
        let sealed = ParallelMap.map(count: records.count) { index in
            Result { () throws(SealedEnvelopeError) -> [UInt8] in
                try SealedEnvelope.seal(payload: records[index].encode(), to: recipient, from: localKey)
            }
        }
        var envelopes = [[UInt8]]()
        envelopes.reserveCapacity(sealed.count)
        for (index, result) in sealed.enumerated() {
            switch result {
            case let .success(envelope): envelopes.append(envelope)
            case let .failure(error): throw .seal(index: index, error)
            }
        }
        return try write(envelopes: envelopes, directory: directory, nowMillis: nowMillis, ledger: ledger)
    }

    /// Writes already sealed envelopes as bundles, split at `bundleLimit`, in order. A crash
    /// leaves every bundle either complete under its name or absent (a dot-named temporary
    /// file at most, which importers ignore).
    public func write(
        envelopes: [[UInt8]], directory: String, nowMillis: UInt64, ledger: SpoolLedger? = nil
    ) throws(SpoolExportError) -> [SpoolWrittenBundle] {
        var written = [SpoolWrittenBundle]()
        var start = 0
        while start < envelopes.count {
            var end = start
            var bytes = 0
            // At least one envelope per bundle, then as many as fit.
            while end < envelopes.count, end == start || SpoolBundle.encodedLength(envelopeBytes: bytes + envelopes[end].count) <= bundleLimit {
                bytes += envelopes[end].count
                end += 1
            }
            let id = SpoolBundleID.random()
            let name = Self.fileName(millis: nowMillis, part: written.count, id: id)
            let contents = SpoolBundle.encode(id: id, envelopes: Array(envelopes[start..<end]))
            do throws(SpoolFileError) {
                // Recorded before the file appears, so our own importer never reads it.
                try ledger?.record(id)
                try SpoolFiles.writeAtomically(directory: directory, name: name, contents: contents)
            } catch {
                throw .file(error)
            }
            written.append(SpoolWrittenBundle(id: id, fileName: name, envelopeCount: end - start, byteCount: contents.count))
            start = end
        }
        return written
    }

    /// `lnp-TTTTTTTTTTTTTTT-PPPP-ID.lnpspool`: sorting by name sorts by time, then by part of
    /// one export; the random id makes names unique across nodes and exports.
    static func fileName(millis: UInt64, part: Int, id: SpoolBundleID) -> String {
        "lnp-" + padded(millis, 15) + "-" + padded(UInt64(part), 4) + "-" + id.hex + SpoolBundle.fileExtension
    }

    private static func padded(_ value: UInt64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}

/// Receipts for the way back: the ids of messages taken in from one sender, as few receipt
/// records as the 1024-id limit allows.
public enum SpoolReceipts {
    public static func records(acknowledging ids: [[UInt8]]) throws(EnvelopeRecordError) -> [EnvelopeRecord] {
        var records = [EnvelopeRecord]()
        var start = 0
        while start < ids.count {
            let end = min(ids.count, start + EnvelopeReceipt.maximumIDs)
            records.append(.receipt(try EnvelopeReceipt(delivered: Array(ids[start..<end]))))
            start = end
        }
        return records
    }
}
