@testable import LNPTransportTor
import Testing

@Suite struct TorControlReplyParserTests {
    /// Feeds `text` split at `splits` (byte offsets) and collects every message.
    private func parse(_ text: String, splits: [Int] = [], limits: TorControlReplyParser.Limits = .init())
        throws(TorControlProtocolError) -> [TorControlMessage] {
        var parser = TorControlReplyParser(limits: limits)
        let bytes = Array(text.utf8)
        var start = 0
        for split in splits + [bytes.count] where split >= start {
            try parser.feed(bytes[start..<split])
            start = split
        }
        var messages: [TorControlMessage] = []
        while let message = parser.next() { messages.append(message) }
        return messages
    }

    // Recorded from tor 0.4.9 (GETINFO version config-text, abbreviated config).
    static let getInfoReply = "250-version=0.4.9.11\r\n250+config-text=\r\nControlPort auto\r\n..leading dot\r\nSocksPort auto\r\n.\r\n250 OK\r\n"

    @Test func multiLineAndDataReplyAtEverySplitPoint() throws {
        let expected = TorControlMessage.reply(TorControlReply(lines: [
            TorControlReplyLine(status: 250, text: "version=0.4.9.11"),
            TorControlReplyLine(status: 250, text: "config-text=", data: "ControlPort auto\n.leading dot\nSocksPort auto"),
            TorControlReplyLine(status: 250, text: "OK"),
        ]))
        let count = Self.getInfoReply.utf8.count
        for split in 0...count {
            #expect(try parse(Self.getInfoReply, splits: [split]) == [expected], "split at \(split)")
        }
        // One byte at a time.
        #expect(try parse(Self.getInfoReply, splits: Array(0...count)) == [expected])
    }

    @Test func eventsBetweenRepliesAreSeparated() throws {
        let text = "250 OK\r\n650 SIGNAL RELOAD\r\n650-STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED\r\n650 OK\r\n552 Unrecognized key \"x\"\r\n"
        let messages = try parse(text, splits: [3, 11, 40])
        #expect(messages.count == 4)
        #expect(messages[0] == .reply(TorControlReply(lines: [.init(status: 250, text: "OK")])))
        #expect(messages[1] == .event(TorControlReply(lines: [.init(status: 650, text: "SIGNAL RELOAD")])))
        guard case let .event(multi) = messages[2] else { Issue.record("expected an event"); return }
        #expect(multi.lines.count == 2)
        guard case let .reply(error) = messages[3] else { Issue.record("expected a reply"); return }
        #expect(error.status == 552 && !error.isSuccess && error.message == "Unrecognized key \"x\"")
    }

    /// Empty data lines are lines too: an empty first line used to vanish ("\nb" came out
    /// as "b"), because the parser took "no bytes yet" for "no line yet".
    @Test func emptyDataLinesAreKept() throws {
        let text = "250+config-text=\r\n\r\nb\r\n\r\n.\r\n250 OK\r\n"
        let messages = try parse(text)
        guard case let .reply(reply) = try #require(messages.first) else { Issue.record("expected a reply"); return }
        #expect(reply.lines.first?.data == "\nb\n")
        #expect(try parse("250+x=\r\n\r\n\r\n.\r\n250 OK\r\n").first == .reply(TorControlReply(lines: [
            TorControlReplyLine(status: 250, text: "x=", data: "\n"), TorControlReplyLine(status: 250, text: "OK"),
        ])))
        // The line feeds count toward the data limit as before.
        let limits = TorControlReplyParser.Limits(maxDataBytes: 2)
        #expect(throws: TorControlProtocolError.dataTooLarge(limit: 2)) { try parse("250+x=\r\n\r\n\r\n\r\n\r\n.\r\n250 OK\r\n", limits: limits) }
    }

    @Test func bareLineFeedsAreAccepted() throws {
        #expect(try parse("250 OK\n") == [.reply(TorControlReply(lines: [.init(status: 250, text: "OK")]))])
    }

    @Test func malformedLinesAreTypedErrorsAndStick() {
        for bad in ["25 OK\r\n", "250\r\n", "2x0 OK\r\n", "250*OK\r\n", "\r\n", "OK\r\n"] {
            #expect(throws: TorControlProtocolError.self, "\(bad)") { try parse(bad) }
        }
        var parser = TorControlReplyParser()
        #expect(throws: TorControlProtocolError.malformedLine("HTTP/1.1 400 Bad Request")) {
            try parser.feed(Array("HTTP/1.1 400 Bad Request\r\n".utf8))
        }
        // Nothing after a framing error can be trusted.
        #expect(throws: TorControlProtocolError.malformedLine("HTTP/1.1 400 Bad Request")) { try parser.feed(Array("250 OK\r\n".utf8)) }
        #expect(parser.next() == nil)
    }

    @Test func lineLengthIsBoundedBeforeTheLineEnds() {
        let limits = TorControlReplyParser.Limits(maxLineLength: 64)
        var parser = TorControlReplyParser(limits: limits)
        // No newline ever comes: the parser must refuse once the limit is passed.
        #expect(throws: TorControlProtocolError.lineTooLong(limit: 64)) {
            try parser.feed(Array(repeating: UInt8(ascii: "2"), count: 66))
        }
        // Exactly at the limit is fine, CR not counted.
        #expect(throws: Never.self) { try parse("250 " + String(repeating: "x", count: 60) + "\r\n", limits: limits) }
    }

    @Test func linesPerReplyAndDataSizeAreBounded() {
        let manyLines = String(repeating: "250-x=y\r\n", count: 11) + "250 OK\r\n"
        #expect(throws: TorControlProtocolError.tooManyLines(limit: 10)) {
            try parse(manyLines, limits: .init(maxLinesPerReply: 10))
        }
        let bigData = "250+k=\r\n" + String(repeating: "0123456789\r\n", count: 20) + ".\r\n250 OK\r\n"
        #expect(throws: TorControlProtocolError.dataTooLarge(limit: 100)) {
            try parse(bigData, limits: .init(maxDataBytes: 100))
        }
        // The counters start over with each reply.
        #expect(throws: Never.self) {
            try parse(String(repeating: "250-x=y\r\n250 OK\r\n", count: 20), limits: .init(maxLinesPerReply: 2))
        }
    }

    @Test func eventInsideAReplyAndNonUTF8AreRejected() {
        #expect(throws: TorControlProtocolError.inconsistentStatus(first: 250, then: 650)) {
            try parse("250-version=1\r\n650 SIGNAL RELOAD\r\n")
        }
        var parser = TorControlReplyParser()
        #expect(throws: TorControlProtocolError.notUTF8) { try parser.feed([0x32, 0x35, 0x30, 0x20, 0xff, 0xfe, 0x0d, 0x0a]) }
    }

    /// Arbitrary bytes in arbitrary chunks: messages or a typed error, never a trap, and
    /// never more buffered than the limits allow.
    @Test func arbitraryInputNeverTraps() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789 -+.\r\n=\"\\ABCOK".utf8) + [0xff, 0x00]
        let limits = TorControlReplyParser.Limits(maxLineLength: 40, maxLinesPerReply: 8, maxDataBytes: 64)
        for _ in 0..<2_000 {
            var parser = TorControlReplyParser(limits: limits)
            let length = Int.random(in: 0...300, using: &generator)
            let bytes = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
            var offset = 0
            do {
                while offset < bytes.count {
                    let chunk = Int.random(in: 1...16, using: &generator)
                    try parser.feed(bytes[offset..<min(offset + chunk, bytes.count)])
                    offset += chunk
                    while let message = parser.next() {
                        guard case let .reply(reply) = message else { continue }
                        #expect(reply.lines.count <= limits.maxLinesPerReply)
                        #expect(reply.lines.allSatisfy { $0.text.utf8.count <= limits.maxLineLength })
                    }
                }
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }

    @Test func errorsDescribeThemselvesInOneSentence() {
        let errors: [TorControlProtocolError] = [
            .lineTooLong(limit: 1), .tooManyLines(limit: 1), .dataTooLarge(limit: 1), .malformedLine("x"),
            .inconsistentStatus(first: 250, then: 650), .notUTF8, .unsolicitedReply(status: 250),
        ]
        for error in errors {
            #expect(error.description.hasPrefix("tor's control port"))
            #expect(!error.description.contains("\n"))
        }
    }
}

@Suite struct TorControlSyntaxTests {
    @Test func quotingRoundTrips() throws {
        for text in ["plain", "with space", "quote \" and backslash \\", "", "ünïcode"] {
            let words = try #require(TorControlSyntax.words("X=" + TorControlSyntax.quoted(text)))
            #expect(words.count == 1)
            #expect(words[0].word == "X=" + text)
            #expect(words[0].isQuoted)
        }
    }

    @Test func keywordArgumentsAndEscapes() throws {
        let arguments = try #require(TorControlSyntax.keywordArguments(
            #"NOTICE BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay" WARNING="a\tb\n\"c\"" OCT="\101\102""#))
        #expect(arguments["PROGRESS"] == "5")
        #expect(arguments["SUMMARY"] == "Connecting to a relay")
        #expect(arguments["WARNING"] == "a\tb\n\"c\"")
        #expect(arguments["OCT"] == "AB")
        #expect(arguments["NOTICE"] == nil)
        #expect(TorControlSyntax.keywordArguments(#"A="unterminated"#) == nil)
        #expect(TorControlSyntax.keywordArguments(#"A="bad \q escape""#) == nil)
        #expect(TorControlSyntax.keywordArguments(#"A="\777""#) == nil)
        #expect(try #require(TorControlSyntax.words(#""127.0.0.1:9050" "[::1]:9050""#)).map(\.word) == ["127.0.0.1:9050", "[::1]:9050"])
    }
}

@Suite struct TorEventTests {
    private func event(_ line: String) -> TorEvent {
        TorEvent(TorControlReply(lines: [TorControlReplyLine(status: 650, text: line)]))
    }

    @Test func statusClientEvents() {
        #expect(event(#"STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done""#)
            == .bootstrap(TorBootstrapPhase(progress: 100, tag: "done", summary: "Done")))
        #expect(event(#"STATUS_CLIENT WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay" WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=1 RECOMMENDATION=ignore"#)
            == .bootstrap(TorBootstrapPhase(progress: 5, tag: "conn", summary: "Connecting to a relay", warning: "Connection refused")))
        #expect(event("STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED")
            == .clientStatus(severity: "NOTICE", action: "CIRCUIT_ESTABLISHED", arguments: [:]))
        #expect(event("STATUS_CLIENT WARN CIRCUIT_NOT_ESTABLISHED REASON=CLOCK_SKEW")
            == .clientStatus(severity: "WARN", action: "CIRCUIT_NOT_ESTABLISHED", arguments: ["REASON": "CLOCK_SKEW"]))
        // Out-of-range progress is not a bootstrap phase.
        guard case .clientStatus = event("STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=1000 TAG=x SUMMARY=\"y\"") else {
            Issue.record("PROGRESS=1000 must not parse as a phase")
            return
        }
    }

    @Test func onionDescriptorEvents() {
        let id = "thcstpza3exloc5t7lqkei4zd6cgbk6zfioai7cvyg34kyhokk6ufhad"
        #expect(event("HS_DESC UPLOADED \(id) UNKNOWN $ABCDEF0123456789ABCDEF0123456789ABCDEF01~relay")
            == .onionDescriptor(OnionDescriptorEvent(action: .uploaded, serviceID: id, hsDir: "$ABCDEF0123456789ABCDEF0123456789ABCDEF01~relay", reason: nil)))
        #expect(event("HS_DESC FAILED \(id) UNKNOWN $AB REASON=UPLOAD_REJECTED")
            == .onionDescriptor(OnionDescriptorEvent(action: .failed, serviceID: id, hsDir: "$AB", reason: "UPLOAD_REJECTED")))
        #expect(event("HS_DESC CREATED \(id) UNKNOWN UNKNOWN descid")
            == .onionDescriptor(OnionDescriptorEvent(action: .created, serviceID: id, hsDir: "UNKNOWN", reason: nil)))
        #expect(event("HS_DESC UPLOAD") == .other(keyword: "HS_DESC", text: "UPLOAD"))
        #expect(event("CIRC 1 BUILT") == .other(keyword: "CIRC", text: "1 BUILT"))
    }
}
