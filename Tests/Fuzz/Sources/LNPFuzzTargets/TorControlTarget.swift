import LNPTransportTor

/// `torcontrol`: bytes from a tor control port, fed to `TorControlReplyParser` in pieces;
/// every line and event it hands out also goes through `TorEvent`, `TorBootstrapPhase`,
/// `OnionDescriptorEvent` and `TorControlSyntax`. Layout: `[options][4 chunk-pattern
/// bytes][stream]`; options bit 0 picks small limits (64-byte lines, 8 lines, 128 data
/// bytes) so the fuzzer reaches each one, otherwise the defaults.
///
/// Properties checked:
/// - re-chunking the same input gives the same messages and the same error (one piece,
///   the pattern's pieces, and one byte at a time agree);
/// - limits are honoured: no line text beyond `maxLineLength`, no reply beyond
///   `maxLinesPerReply` lines (data lines included) or `maxDataBytes` of data;
/// - a reply's lines are all events (6xx) or all not, and it is handed out as `.event`
///   exactly when its first status is 6xx;
/// - after an error every later `feed` throws the same error, and nothing new comes out;
/// - the messages, written back in control-port syntax (CRLF, dot-encoded data), parse to
///   the same messages;
/// - syntax helpers: `keywordArguments` is nil exactly when `words` is, quoting a word and
///   reading it back gives the word, a bootstrap phase's progress is 0-100.
public enum TorControlTarget {
    static let smallLimits = TorControlReplyParser.Limits(maxLineLength: 64, maxLinesPerReply: 8, maxDataBytes: 128)

    public static func prepare() {}

    struct Outcome: Equatable {
        var messages: [TorControlMessage] = []
        var error: TorControlProtocolError?
    }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        let options = input.byte()
        let pattern = input.take(4)
        let stream = input.rest()
        let limits = options & 1 != 0 ? smallLimits : TorControlReplyParser.Limits()

        let whole = parse([stream[...]], limits: limits)
        let chunked = parse(chunks(of: stream, pattern: pattern), limits: limits)
        fuzzCheck(chunked == whole, "chunked parsing differs: \(chunked) vs \(whole)")
        if stream.count <= 512 {
            let bytewise = parse(stream.indices.map { stream[$0...$0] }, limits: limits)
            fuzzCheck(bytewise == whole, "byte-at-a-time parsing differs")
        }

        for message in whole.messages { check(message, limits: limits) }

        // Written back in the protocol's own syntax, the messages read the same.
        if !whole.messages.isEmpty {
            let reparsed = parse([serialize(whole.messages)[...]], limits: TorControlReplyParser.Limits())
            fuzzCheck(reparsed.error == nil, "re-serialised messages fail: \(String(describing: reparsed.error))")
            fuzzCheck(reparsed.messages == whole.messages, "re-serialised messages differ")
        }
    }

    static func parse(_ pieces: [ArraySlice<UInt8>], limits: TorControlReplyParser.Limits) -> Outcome {
        var parser = TorControlReplyParser(limits: limits)
        fuzzCheck(parser.limits == limits, "limits not kept")
        var outcome = Outcome()
        for piece in pieces {
            do {
                try parser.feed(piece)
            } catch {
                fuzzCheck(!error.description.isEmpty, "empty error description")
                outcome.error = error
                // Messages completed before the error in this piece are still handed out.
                while let message = parser.next() { outcome.messages.append(message) }
                break
            }
            while let message = parser.next() { outcome.messages.append(message) }
        }
        if let failure = outcome.error {
            for bytes in [[UInt8](), Array("250 OK\r\n".utf8)] {
                do {
                    try parser.feed(bytes)
                    fuzzFailure("feed after \(failure) did not throw")
                } catch {
                    fuzzCheck(error == failure, "feed after \(failure) threw \(error)")
                }
                fuzzCheck(parser.next() == nil, "a message came out after an error")
            }
        }
        return outcome
    }

    static func check(_ message: TorControlMessage, limits: TorControlReplyParser.Limits) {
        let reply: TorControlReply
        let isEvent: Bool
        switch message {
        case let .reply(value): (reply, isEvent) = (value, false)
        case let .event(value): (reply, isEvent) = (value, true)
        }
        fuzzCheck(!reply.lines.isEmpty, "empty reply")
        fuzzCheck(reply.isEvent == isEvent, "reply/event classification disagrees with isEvent")
        var lineCount = 0
        var dataBytes = 0
        for line in reply.lines {
            fuzzCheck((0...999).contains(line.status), "status \(line.status) is not three digits")
            fuzzCheck((600..<700).contains(line.status) == isEvent, "event and reply lines mixed in one message")
            fuzzCheck(line.text.utf8.count + 4 <= limits.maxLineLength, "line of \(line.text.utf8.count + 4) bytes passed")
            fuzzCheck(!line.text.utf8.contains(UInt8(ascii: "\n")), "a line's text holds a line feed")
            lineCount += 1
            if let data = line.data {
                // The data lines plus the "." that ends them.
                lineCount += data.isEmpty ? 1 : data.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).count + 1
                dataBytes += data.utf8.count
            }
            checkSyntax(line.text)
        }
        fuzzCheck(lineCount <= limits.maxLinesPerReply, "\(lineCount) lines in one reply passed")
        fuzzCheck(dataBytes <= limits.maxDataBytes, "\(dataBytes) data bytes passed")
        if isEvent {
            switch TorEvent(reply) {
            case let .bootstrap(phase):
                fuzzCheck((0...100).contains(phase.progress), "bootstrap progress \(phase.progress)")
                fuzzCheck(!phase.description.isEmpty, "empty phase description")
            case let .clientStatus(severity, action, arguments):
                // The event's first two words and its KEY=VALUE words, as the syntax reads them
                // (an empty quoted word is a word: tor never sends one, but it is not an error).
                let rest = String(reply.lines[0].text.drop { $0 != " " }.drop { $0 == " " })
                let words = TorControlSyntax.words(rest)
                fuzzCheck(words.map { $0.count >= 2 && $0[0].word == severity && $0[1].word == action } == true
                              && TorControlSyntax.keywordArguments(rest) == arguments,
                          "client status \(severity) \(action) does not match the words of '\(rest)'")
            case let .onionDescriptor(event):
                let rest = String(reply.lines[0].text.drop { $0 != " " }.drop { $0 == " " })
                let words = TorControlSyntax.words(rest)
                fuzzCheck(words.map { $0.count >= 4 && $0[1].word == event.serviceID && $0[3].word == event.hsDir } == true,
                          "HS_DESC event \(event) does not match the words of '\(rest)'")
            case let .other(keyword, _):
                fuzzCheck(!keyword.contains(" "), "event keyword '\(keyword)' holds a space")
            }
        }
    }

    static func checkSyntax(_ text: String) {
        let words = TorControlSyntax.words(text)
        let arguments = TorControlSyntax.keywordArguments(text)
        fuzzCheck((words == nil) == (arguments == nil), "words and keywordArguments disagree on '\(text)'")
        if let phase = TorBootstrapPhase.parse(text) {
            fuzzCheck((0...100).contains(phase.progress), "bootstrap progress \(phase.progress) from '\(text)'")
        }
        _ = OnionDescriptorEvent.parse(text)
        guard let words else { return }
        for (word, _) in words.prefix(8) where !word.contains("\r") && !word.contains("\n") {
            let again = TorControlSyntax.words("K=" + TorControlSyntax.quoted(word))
            guard let again, again.count == 1, again[0].word == "K=" + word, again[0].isQuoted else {
                fuzzFailure("quoting '\(word)' does not read back: \(String(describing: again))")
            }
        }
        // Each argument is the first word that starts with its key and "=".
        for (key, value) in arguments ?? [:] {
            let first = words.first { entry in entry.word.firstIndex(of: "=").map { String(entry.word[..<$0]) } == key }
            fuzzCheck(first?.word == key + "=" + value, "argument \(key)=\(value) is not the first such word of '\(text)'")
        }
    }

    /// The messages in control-port syntax: "-" for middle lines, "+" and a dot-encoded
    /// block for lines with data, " " for the last line.
    static func serialize(_ messages: [TorControlMessage]) -> [UInt8] {
        var out: [UInt8] = []
        for message in messages {
            let reply: TorControlReply
            switch message {
            case let .reply(value), let .event(value): reply = value
            }
            for (index, line) in reply.lines.enumerated() {
                let status = String(line.status)
                let padded = String(repeating: "0", count: 3 - status.count) + status
                let separator = line.data != nil ? "+" : index == reply.lines.count - 1 ? " " : "-"
                out += Array((padded + separator + line.text + "\r\n").utf8)
                if let data = line.data {
                    if !data.isEmpty {
                        for dataLine in data.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                            if dataLine.first == UInt8(ascii: ".") { out.append(UInt8(ascii: ".")) }
                            out += dataLine
                            out += Array("\r\n".utf8)
                        }
                    }
                    out += Array(".\r\n".utf8)
                }
            }
        }
        return out
    }
}
