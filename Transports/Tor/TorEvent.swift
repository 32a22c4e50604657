/// How far tor has got connecting to the network (control-spec "Bootstrap status
/// events"): the `BOOTSTRAP` status of STATUS_CLIENT events and of
/// `GETINFO status/bootstrap-phase`.
public struct TorBootstrapPhase: Sendable, Equatable, CustomStringConvertible {
    /// 0–100; 100 means tor can build circuits.
    public var progress: Int
    /// Machine-readable phase, e.g. "starting", "conn", "done".
    public var tag: String
    /// Human-readable phase, e.g. "Connecting to a relay".
    public var summary: String
    /// Set when tor reports a problem with this phase (severity WARN and its WARNING=).
    public var warning: String?

    public init(progress: Int, tag: String, summary: String, warning: String? = nil) {
        self.progress = progress
        self.tag = tag
        self.summary = summary
        self.warning = warning
    }

    public var isDone: Bool { progress == 100 }

    public var description: String {
        "\(progress)% (\(tag)): \(summary)" + (warning.map { " — warning: \($0)" } ?? "")
    }

    /// Parses `SEVERITY BOOTSTRAP PROGRESS=N TAG=T SUMMARY="S" [WARNING="W" …]`.
    public static func parse(_ text: String) -> TorBootstrapPhase? {
        guard let words = TorControlSyntax.words(text), words.count >= 2, words[1].word == "BOOTSTRAP",
              let arguments = TorControlSyntax.keywordArguments(text),
              let progressText = arguments["PROGRESS"], progressText.utf8.count <= 3,
              let progress = Int(progressText), (0...100).contains(progress),
              let tag = arguments["TAG"]
        else { return nil }
        return TorBootstrapPhase(progress: progress, tag: tag, summary: arguments["SUMMARY"] ?? "",
                                 warning: words[0].word == "WARN" ? arguments["WARNING"] ?? "" : nil)
    }
}

/// An HS_DESC event: what happened to one onion service descriptor at one HSDir.
public struct OnionDescriptorEvent: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        case requested, upload, received, uploaded, ignore, failed, created
        case other(String)

        init(_ word: String) {
            switch word {
            case "REQUESTED": self = .requested
            case "UPLOAD": self = .upload
            case "RECEIVED": self = .received
            case "UPLOADED": self = .uploaded
            case "IGNORE": self = .ignore
            case "FAILED": self = .failed
            case "CREATED": self = .created
            default: self = .other(word)
            }
        }
    }

    public var action: Action
    /// The onion name without ".onion", or "UNKNOWN".
    public var serviceID: String
    /// The HSDir's fingerprint (with or without a nickname), or "UNKNOWN".
    public var hsDir: String
    /// Tor's REASON= for FAILED (e.g. "UPLOAD_REJECTED", "NOT_FOUND").
    public var reason: String?

    /// Parses `Action HSAddress AuthType HsDir [DescriptorID] [REASON=…] …`.
    public static func parse(_ text: String) -> OnionDescriptorEvent? {
        guard let words = TorControlSyntax.words(text), words.count >= 4,
              let arguments = TorControlSyntax.keywordArguments(text)
        else { return nil }
        return OnionDescriptorEvent(action: Action(words[0].word), serviceID: words[1].word,
                                    hsDir: words[3].word, reason: arguments["REASON"])
    }
}

/// An asynchronous event from tor's control port, for the events `setEvents` asked for.
public enum TorEvent: Sendable, Equatable {
    /// STATUS_CLIENT … BOOTSTRAP: bootstrap progress.
    case bootstrap(TorBootstrapPhase)
    /// Any other STATUS_CLIENT status, e.g. CIRCUIT_ESTABLISHED, CIRCUIT_NOT_ESTABLISHED
    /// REASON=…, ENOUGH_DIR_INFO, DANGEROUS_SOCKS.
    case clientStatus(severity: String, action: String, arguments: [String: String])
    /// HS_DESC: an onion service descriptor was created, uploaded, failed, …
    case onionDescriptor(OnionDescriptorEvent)
    /// An event kind this type does not model (or one it could not parse), with its text.
    case other(keyword: String, text: String)

    /// Interprets the first line of a 650 reply: `KEYWORD rest`. Public for the fuzz
    /// target (Tests/Fuzz), which reaches this module only through its product.
    public init(_ reply: TorControlReply) {
        let line = reply.lines.first?.text ?? ""
        let keyword = String(line.prefix { $0 != " " })
        let rest = String(line.dropFirst(keyword.count).drop { $0 == " " })
        switch keyword {
        case "STATUS_CLIENT":
            if let phase = TorBootstrapPhase.parse(rest) {
                self = .bootstrap(phase)
            } else if let words = TorControlSyntax.words(rest), words.count >= 2,
                      let arguments = TorControlSyntax.keywordArguments(rest) {
                self = .clientStatus(severity: words[0].word, action: words[1].word, arguments: arguments)
            } else {
                self = .other(keyword: keyword, text: rest)
            }
        case "HS_DESC":
            self = OnionDescriptorEvent.parse(rest).map(TorEvent.onionDescriptor) ?? .other(keyword: keyword, text: rest)
        default:
            self = .other(keyword: keyword, text: rest)
        }
    }
}
