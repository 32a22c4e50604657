/// One line of a control-port reply (control-spec §2.3, "Replies from Tor to the
/// controller"): `StatusCode (SP / "-" / "+") ReplyText CRLF`, plus for "+" lines the
/// dot-encoded data block that follows.
public struct TorControlReplyLine: Sendable, Equatable {
    public var status: Int
    /// Everything after the status code and its separator.
    public var text: String
    /// The decoded data block of a "+" line (lines joined with "\n", dot-escaping undone).
    public var data: String?

    public init(status: Int, text: String, data: String? = nil) {
        self.status = status
        self.text = text
        self.data = data
    }
}

/// A complete reply: one or more lines, the last one ending with "StatusCode SP".
public struct TorControlReply: Sendable, Equatable {
    public var lines: [TorControlReplyLine]

    public init(lines: [TorControlReplyLine]) { self.lines = lines }

    /// The final line's status code decides a reply's outcome (2xx success, 4xx/5xx error).
    public var status: Int { lines.last?.status ?? 0 }
    public var isSuccess: Bool { (200..<300).contains(status) }
    /// Asynchronous events use 6xx codes (in practice 650).
    public var isEvent: Bool { (600..<700).contains(lines.first?.status ?? 0) }
    /// The final line's text, e.g. "OK" or tor's error message.
    public var message: String { lines.last?.text ?? "" }
}

/// What the parser hands out: a reply to the oldest outstanding command, or an
/// asynchronous event, which tor may send between any two replies.
public enum TorControlMessage: Sendable, Equatable {
    case reply(TorControlReply)
    case event(TorControlReply)
}

public enum TorControlProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    case lineTooLong(limit: Int)
    case tooManyLines(limit: Int)
    case dataTooLarge(limit: Int)
    case malformedLine(String)
    case inconsistentStatus(first: Int, then: Int)
    case notUTF8
    case unsolicitedReply(status: Int)

    public var description: String {
        switch self {
        case let .lineTooLong(limit):
            return "tor's control port sent a line longer than \(limit) bytes"
        case let .tooManyLines(limit):
            return "tor's control port sent a reply of more than \(limit) lines"
        case let .dataTooLarge(limit):
            return "tor's control port sent a data block larger than \(limit) bytes"
        case let .malformedLine(line):
            return "tor's control port sent a malformed reply line '\(line.prefix(80))' (expected three digits, then ' ', '-' or '+')"
        case let .inconsistentStatus(first, then):
            return "tor's control port mixed an event and a reply in one message (status \(first), then \(then))"
        case .notUTF8:
            return "tor's control port sent bytes that are not UTF-8"
        case let .unsolicitedReply(status):
            return "tor's control port sent a reply (status \(status)) when no command was waiting for one"
        }
    }
}

/// Turns the byte stream from tor's control port into replies and events. Sans-IO: feed
/// it chunks as they arrive (split anywhere), take complete messages out. Every quantity
/// tor controls is bounded, because a control port can be anything that listens on the
/// configured address.
public struct TorControlReplyParser: Sendable {
    public struct Limits: Sendable, Equatable {
        /// One line without its CRLF. Tor's longest ordinary lines (ADD_ONION's key,
        /// HS_DESC events) are a few hundred bytes.
        public var maxLineLength: Int
        /// Lines in one reply, counting the lines of data blocks.
        public var maxLinesPerReply: Int
        /// Bytes in all data blocks of one reply (GETINFO config-text, ns/all, …).
        public var maxDataBytes: Int

        public init(maxLineLength: Int = 16 * 1024, maxLinesPerReply: Int = 4096, maxDataBytes: Int = 1 << 20) {
            self.maxLineLength = maxLineLength
            self.maxLinesPerReply = maxLinesPerReply
            self.maxDataBytes = maxDataBytes
        }
    }

    private enum State: Sendable {
        case betweenReplies
        /// Inside a reply whose lines so far ended with "-" or a finished "+" block.
        case inReply
        /// Inside the data block of a "+" line; `lineCount` data lines taken so far (an
        /// empty first line leaves `data` empty but still needs its line feed after it).
        case inData(status: Int, text: String, data: [UInt8], lineCount: Int)
    }

    public let limits: Limits
    private var state: State = .betweenReplies
    private var pendingLine: [UInt8] = []
    private var lines: [TorControlReplyLine] = []
    private var linesInReply = 0
    private var dataBytesInReply = 0
    private var ready: [TorControlMessage] = []
    /// Once the stream is malformed, nothing after it can be framed reliably.
    private var failure: TorControlProtocolError?

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Adds bytes from the connection. Throws on the first protocol violation, and again
    /// on every later call: the connection must be closed.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(TorControlProtocolError) {
        if let failure { throw failure }
        do throws(TorControlProtocolError) {
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    var line = pendingLine
                    pendingLine.removeAll(keepingCapacity: true)
                    // The spec requires CRLF; a bare LF is tolerated because nothing is ambiguous.
                    if line.last == UInt8(ascii: "\r") { line.removeLast() }
                    try take(line: line)
                } else {
                    guard pendingLine.count <= limits.maxLineLength else { throw .lineTooLong(limit: limits.maxLineLength) }
                    pendingLine.append(byte)
                }
            }
        } catch {
            failure = error
            throw error
        }
    }

    /// The next complete reply or event, oldest first.
    public mutating func next() -> TorControlMessage? {
        ready.isEmpty ? nil : ready.removeFirst()
    }

    private mutating func take(line: [UInt8]) throws(TorControlProtocolError) {
        // The CR the limit check let through is not part of the line proper.
        guard line.count <= limits.maxLineLength else { throw .lineTooLong(limit: limits.maxLineLength) }
        linesInReply += 1
        guard linesInReply <= limits.maxLinesPerReply else { throw .tooManyLines(limit: limits.maxLinesPerReply) }
        if case .inData(let status, let text, var data, let lineCount) = state {
            if line == [UInt8(ascii: ".")] {
                lines.append(TorControlReplyLine(status: status, text: text, data: try utf8(data)))
                state = .inReply
                return
            }
            // Dot-encoding: a data line that starts with "." was sent with one more ".".
            let content = line.first == UInt8(ascii: ".") ? line.dropFirst() : line[...]
            dataBytesInReply += content.count + (lineCount == 0 ? 0 : 1)
            guard dataBytesInReply <= limits.maxDataBytes else { throw .dataTooLarge(limit: limits.maxDataBytes) }
            if lineCount > 0 { data.append(UInt8(ascii: "\n")) }
            data.append(contentsOf: content)
            state = .inData(status: status, text: text, data: data, lineCount: lineCount + 1)
            return
        }
        guard line.count >= 4,
              line[0..<3].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let separator = Optional(line[3]),
              separator == UInt8(ascii: " ") || separator == UInt8(ascii: "-") || separator == UInt8(ascii: "+")
        else {
            throw .malformedLine(String(decoding: line, as: UTF8.self))
        }
        let status = line[0..<3].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        let text = try utf8(Array(line[4...]))
        if let first = lines.first?.status, (600..<700).contains(first) != (600..<700).contains(status) {
            throw .inconsistentStatus(first: first, then: status)
        }
        switch separator {
        case UInt8(ascii: "-"):
            lines.append(TorControlReplyLine(status: status, text: text))
            state = .inReply
        case UInt8(ascii: "+"):
            state = .inData(status: status, text: text, data: [], lineCount: 0)
        default:
            lines.append(TorControlReplyLine(status: status, text: text))
            let reply = TorControlReply(lines: lines)
            ready.append(reply.isEvent ? .event(reply) : .reply(reply))
            lines = []
            linesInReply = 0
            dataBytesInReply = 0
            state = .betweenReplies
        }
    }

    private func utf8(_ bytes: [UInt8]) throws(TorControlProtocolError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
        return text
    }
}
