/// Every way the message store can fail, as a value msgd can report in one sentence.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The database file or its directory could not be opened, created or protected.
    case cannotOpen(path: String, reason: String)
    /// SQLite refused an operation; `code` is its extended result code.
    case database(code: Int32, message: String)
    /// A message id must be exactly 16 bytes.
    case invalidMessageID(length: Int)
    /// Sequence numbers start at 1 and must fit SQLite's signed 64-bit integers.
    case invalidSequence(UInt64)
    case payloadTooLarge(size: Int, limit: Int)
    case batchTooLarge(count: Int, limit: Int)
    case invalidAddress(String)
    /// A counter reached the limit of the file's layout (sequence numbers or recipients).
    case full(String)
    /// A row read back from the file does not hold what the schema promises.
    case corruptRow(String)
    /// The database was written by a newer version of this program.
    case unknownSchema(String)
    /// A payload kept in a segment file (see `PayloadSegments`) is missing or cut short.
    case payloadUnreadable(path: String, offset: Int64, length: Int, reason: String)
    /// A payload could not be written to, or made durable in, its segment file.
    case payloadWriteFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            "cannot open the message store at \(path): \(reason)"
        case let .database(code, message):
            "the message store failed (SQLite error \(code)): \(message)"
        case let .invalidMessageID(length):
            "a message id must be 16 bytes, got \(length)"
        case let .invalidSequence(seq):
            "sequence number \(seq) is out of range (1...\(Int64.max))"
        case let .payloadTooLarge(size, limit):
            "a message payload of \(size) bytes exceeds the limit of \(limit) bytes"
        case let .batchTooLarge(count, limit):
            "a batch of \(count) messages exceeds the limit of \(limit)"
        case let .invalidAddress(address):
            "the peer address \"\(address.prefix(80))\" is empty or longer than \(MessageStore.maxAddressLength) bytes"
        case let .full(what):
            "the message store is full: \(what)"
        case let .corruptRow(what):
            "the message store holds a damaged row: \(what)"
        case let .unknownSchema(detail):
            "the message store was written by a newer version of LNP Node: \(detail)"
        case let .payloadUnreadable(path, offset, length, reason):
            "the payload of a stored message (\(length) bytes at offset \(offset) of \(path)) cannot be read: \(reason)"
        case let .payloadWriteFailed(path, reason):
            "cannot write message payloads to \(path): \(reason)"
        }
    }
}
