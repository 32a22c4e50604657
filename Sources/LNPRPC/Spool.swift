import LNPCrypto
import LNPWire

/// `spool export`: write bundles for one peer, or for every peer with something owed, into a
/// directory (a USB stick, an uplink folder).
public struct SpoolExportRequest: RPCPayload, Equatable {
    public var directory: String
    public var peer: PublicKey?
    public init(directory: String, peer: PublicKey?) {
        self.directory = directory
        self.peer = peer
    }
    public func encode(into writer: inout WireWriter) {
        writer.writeString(directory)
        writer.writeOptionalNodeID(peer)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        directory = try reader.readString(field: "directory")
        peer = try reader.readOptionalNodeID(field: "peer")
    }
}

public struct SpoolExportReply: RPCPayload, Equatable {
    /// Bundle files written, by name.
    public var files: [String]
    public var messages: UInt32
    public var receipts: UInt32
    /// Peers bundles were written for.
    public var peers: UInt32
    public init(files: [String], messages: UInt32, receipts: UInt32, peers: UInt32) {
        self.files = files
        self.messages = messages
        self.receipts = receipts
        self.peers = peers
    }
    public func encode(into writer: inout WireWriter) {
        StringList(files).encode(into: &writer)
        writer.writeU32(messages)
        writer.writeU32(receipts)
        writer.writeU32(peers)
    }
    public init(from reader: inout WireReader) throws(WireError) {
        files = try StringList(from: &reader).values
        messages = try reader.readU32(field: "messages")
        receipts = try reader.readU32(field: "receipts")
        peers = try reader.readU32(field: "peers")
    }
}

public struct SpoolImportRequest: RPCPayload, Equatable {
    public var directory: String
    public init(directory: String) { self.directory = directory }
    public func encode(into writer: inout WireWriter) { writer.writeString(directory) }
    public init(from reader: inout WireReader) throws(WireError) { directory = try reader.readString(field: "directory") }
}

/// What one import did. Counts are of bundle files, messages and envelopes; `problems` holds
/// one sentence per file or envelope that was refused (at most `maximumProblems`, the rest
/// counted only, and in msgd's log).
public struct SpoolImportReply: RPCPayload, Equatable {
    public static let maximumProblems = 256

    public var bundlesImported: UInt32
    public var bundlesAlreadyImported: UInt32
    public var bundlesForAnotherNode: UInt32
    public var filesRejected: UInt32
    public var messagesStored: UInt32
    /// Messages this node held already (by sender and sequence number, or id).
    public var duplicates: UInt32
    public var receipts: UInt32
    public var envelopesRejected: UInt32
    /// More bundle files wait than one import takes; import again.
    public var moreWaiting: Bool
    public var problems: [String]

    public init(bundlesImported: UInt32 = 0, bundlesAlreadyImported: UInt32 = 0, bundlesForAnotherNode: UInt32 = 0,
                filesRejected: UInt32 = 0, messagesStored: UInt32 = 0, duplicates: UInt32 = 0, receipts: UInt32 = 0,
                envelopesRejected: UInt32 = 0, moreWaiting: Bool = false, problems: [String] = []) {
        self.bundlesImported = bundlesImported
        self.bundlesAlreadyImported = bundlesAlreadyImported
        self.bundlesForAnotherNode = bundlesForAnotherNode
        self.filesRejected = filesRejected
        self.messagesStored = messagesStored
        self.duplicates = duplicates
        self.receipts = receipts
        self.envelopesRejected = envelopesRejected
        self.moreWaiting = moreWaiting
        self.problems = problems
    }

    public func encode(into writer: inout WireWriter) {
        for count in [bundlesImported, bundlesAlreadyImported, bundlesForAnotherNode, filesRejected, messagesStored,
                      duplicates, receipts, envelopesRejected] { writer.writeU32(count) }
        writer.writeBool(moreWaiting)
        StringList(Array(problems.prefix(Self.maximumProblems))).encode(into: &writer)
    }

    public init(from reader: inout WireReader) throws(WireError) {
        bundlesImported = try reader.readU32(field: "bundles_imported")
        bundlesAlreadyImported = try reader.readU32(field: "bundles_already_imported")
        bundlesForAnotherNode = try reader.readU32(field: "bundles_for_another_node")
        filesRejected = try reader.readU32(field: "files_rejected")
        messagesStored = try reader.readU32(field: "messages_stored")
        duplicates = try reader.readU32(field: "duplicates")
        receipts = try reader.readU32(field: "receipts")
        envelopesRejected = try reader.readU32(field: "envelopes_rejected")
        moreWaiting = try reader.readBool(field: "more_waiting")
        problems = try StringList(from: &reader).values
        guard problems.count <= Self.maximumProblems else {
            throw WireError(.invalidValue("\(problems.count) problems"), offset: reader.offset, context: "spool import reply")
        }
    }
}
