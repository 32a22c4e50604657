import ArgumentParser
import Foundation
import LNPClient
import LNPCrypto
import LNPRPC
import LNPTransport
import LNPWire

/// lnp-cli: talks to a running lnpd. Every failure ends with one sentence on stderr and a
/// non-zero exit status.
@main
struct LNPCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lnp-cli",
        abstract: "Control a running LNP node and send and receive messages.",
        subcommands: [Info.self, Connect.self, Disconnect.self, Peers.self, Ping.self, Send.self, Recv.self, Status.self, Spool.self]
    )

    /// `--data-dir` belongs to every subcommand; accept it before the subcommand name too
    /// (`lnp-cli --data-dir DIR info`) by moving it after the name before parsing.
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let names = Set(configuration.subcommands.map { $0._commandName })
        if var subcommand = arguments.firstIndex(where: { names.contains($0) }) {
            var global: [String] = [], before: [String] = []
            var index = 0
            while index < subcommand {
                if arguments[index] == "--data-dir", index + 1 < subcommand {
                    global += arguments[index...index + 1]
                    index += 2
                } else {
                    if arguments[index].hasPrefix("--data-dir=") { global.append(arguments[index]) } else { before.append(arguments[index]) }
                    index += 1
                }
            }
            // A command group (`spool export`): the option belongs after the leaf's name.
            var leaf = subcommand
            if let group = configuration.subcommands.first(where: { $0._commandName == arguments[subcommand] }),
               leaf + 1 < arguments.count, group.configuration.subcommands.contains(where: { $0._commandName == arguments[leaf + 1] }) {
                leaf += 1
            }
            arguments = before + Array(arguments[subcommand...leaf]) + global + arguments[(leaf + 1)...]
            subcommand = leaf
        }
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "The node's data directory (default: ~/.lnp-node).")
    var dataDir: String?

    var dataDirectory: String { DataDirectory.resolve(dataDir) }
}

/// Runs `body` with a connected client; turns every error into one sentence and exit 1.
func withClient(_ options: GlobalOptions, _ body: (NodeClient) async throws -> Void) async throws {
    let client: NodeClient
    do {
        client = try NodeClient(dataDirectory: options.dataDirectory)
    } catch {
        fail(error.description)
    }
    defer { client.close() }
    do {
        try await body(client)
    } catch let error as NodeClient.Failure {
        fail(error.description)
    } catch let error as CLIError {
        fail(error.message)
    }
}

struct CLIError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

func fail(_ sentence: String) -> Never {
    FileHandle.standardError.write(Data(("lnp-cli: " + sentence + "\n").utf8))
    exit(1)
}

func parseNodeID(_ text: String) throws -> PublicKey {
    guard text.count == 66, let key = try? PublicKey(hex: text) else {
        throw CLIError("\"\(text)\" is not a node id (66 hex characters, a compressed secp256k1 public key)")
    }
    return key
}

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the node id, listen addresses, onion address, Tor status, version and peer count.")
    @OptionGroup var options: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await withClient(options) { client in
            let info = try await client.info()
            if json {
                var object = JSONObject()
                object["node_id"] = .string(info.nodeID.hex)
                object["listen"] = .array(info.listen.map { .string($0) })
                object["version"] = .string(info.version)
                object["peer_count"] = .number(Double(info.peerCount))
                // Absent until the onion service is published.
                if let onion = info.onion { object["onion"] = .string(onion) }
                let tor = info.tor
                var torObject = JSONObject()
                torObject["state"] = .string(tor.state.name)
                torObject["mode"] = tor.mode.isEmpty ? .null : .string(tor.mode)
                torObject["bootstrap"] = .number(Double(tor.bootstrapProgress))
                torObject["summary"] = .string(tor.summary)
                torObject["socks"] = tor.socks.map { .string($0) } ?? .null
                torObject["onion_reachable"] = .bool(tor.onionReachable)
                torObject["tor_only"] = .bool(tor.torOnly)
                object["tor"] = .object(torObject)
                print(JSONValue.object(object).serialized)
            } else {
                print("node_id: \(info.nodeID.hex)")
                print("listen:  \(info.listen.isEmpty ? "(none)" : info.listen.joined(separator: ", "))")
                if let onion = info.onion { print("onion:   \(onion)\(info.tor.onionReachable ? "" : " (not reachable yet)")") }
                print("tor:     \(Self.describe(info.tor))")
                print("version: \(info.version)")
                print("peers:   \(info.peerCount)")
            }
        }
    }
}

extension Info {
    static func describe(_ tor: TorStatus) -> String {
        var text: String
        switch tor.state {
        case .off: return "off"
        case .starting: text = "starting"
        case .bootstrapping: text = "bootstrapping \(tor.bootstrapProgress) %"
        case .ready: text = "ready"
        case .unavailable: text = "unavailable"
        }
        text += " (\(tor.mode) tor"
        if let socks = tor.socks { text += ", SOCKS \(socks)" }
        if tor.torOnly { text += ", tor only" }
        text += ")"
        if !tor.summary.isEmpty && tor.state != .ready { text += ": \(tor.summary)" }
        return text
    }
}

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Connect to a peer; it stays a persistent peer until disconnect.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "NODEID@HOST:PORT") var address: String

    func run() async throws {
        // Check the form here so a typo fails before any network use.
        do {
            _ = try PeerAddress(parsing: address)
        } catch {
            fail(error.description)
        }
        try await withClient(options) { client in
            let peer = try await client.connect(address)
            print("connected to \(peer.nodeID.hex) at \(peer.address)")
        }
    }
}

struct Disconnect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Disconnect from a peer and stop reconnecting to it.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "NODEID") var nodeID: String

    func run() async throws {
        try await withClient(options) { client in
            try await client.disconnect(try parseNodeID(nodeID))
            print("disconnected \(nodeID)")
        }
    }
}

struct Peers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List peers.")
    @OptionGroup var options: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await withClient(options) { client in
            let peers = try await client.peers()
            if json {
                print(JSONValue.array(peers.map { peer in
                    var object = JSONObject()
                    object["node_id"] = .string(peer.nodeID.hex)
                    object["address"] = .string(peer.address)
                    object["connected"] = .bool(peer.connected)
                    object["direction"] = .string(peer.inbound ? "inbound" : "outbound")
                    object["persistent"] = .bool(peer.persistent)
                    object["large_frames"] = .bool(peer.largeFrames)
                    object["features"] = .array(FeatureVector(bytes: peer.features).setBits.map { .string(Feature.name(ofBit: $0) == "unknown" ? "bit \($0)" : Feature.name(ofBit: $0)) })
                    object["features_hex"] = .string(Hex.encode(peer.features))
                    return .object(object)
                }).serialized)
            } else if peers.isEmpty {
                print("no peers")
            } else {
                for peer in peers {
                    let state = peer.connected ? "connected" : "disconnected"
                    let features = FeatureVector(bytes: peer.features).setBits.map(String.init).joined(separator: ",")
                    print("\(peer.nodeID.hex) \(peer.address) \(state) \(peer.inbound ? "inbound" : "outbound") features=\(features.isEmpty ? "-" : features)")
                }
            }
        }
    }
}

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure the round-trip time to a connected peer.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "NODEID") var nodeID: String
    @Option(help: "Bytes the pong should carry (0-65531).") var bytes: UInt16 = 0

    func run() async throws {
        guard bytes < 65_532 else { fail("--bytes must be below 65532 (BOLT-1: larger asks for no pong)") }
        try await withClient(options) { client in
            let rtt = try await client.ping(try parseNodeID(nodeID), pongBytes: bytes)
            print(String(format: "pong from %@ in %.3f ms", nodeID, rtt.seconds * 1_000))
        }
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send messages; prints each message's id once the node has stored it.",
        discussion: "The default type is \(MessagingWire.defaultUserType), an odd custom Lightning message type.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "NODEID of the recipient") var nodeID: String
    @Option(help: "Lightning message type (odd, or a type the peer understands).") var type: UInt16 = MessagingWire.defaultUserType
    @Option(help: "The message as text.") var text: String?
    @Option(help: "The message as hex.") var hex: String?
    @Option(help: "The message is this file's contents.") var file: String?
    @Flag(help: "Each line of standard input is its own message.") var stdinLines = false

    static let maximumPayload = 16_777_215 - 64
    static let batchBytes = 4 << 20
    static let batchCount = 2_000

    func run() async throws {
        let sources = [text != nil, hex != nil, file != nil, stdinLines].filter { $0 }.count
        guard sources == 1 else { fail("give exactly one of --text, --hex, --file or --stdin-lines") }
        let recipient: PublicKey
        do { recipient = try parseNodeID(nodeID) } catch let error as CLIError { fail(error.message) }
        try await withClient(options) { client in
            if stdinLines {
                var batch: [TypedMessage] = []
                var batchSize = 0
                func flush() async throws {
                    guard !batch.isEmpty else { return }
                    let ids = try await client.send(to: recipient, batch)
                    print(ids.map { Hex.encode($0) }.joined(separator: "\n"))
                    batch.removeAll(keepingCapacity: true)
                    batchSize = 0
                }
                while let line = readLine(strippingNewline: true) {
                    let payload = Array(line.utf8)
                    batch.append(TypedMessage(type: type, payload: payload))
                    batchSize += payload.count + 8
                    if batch.count >= Self.batchCount || batchSize >= Self.batchBytes { try await flush() }
                }
                try await flush()
                return
            }
            let payload: [UInt8]
            if let text {
                payload = Array(text.utf8)
            } else if let hex {
                guard let bytes = Hex.decode(hex) else { throw CLIError("--hex is not valid hex (pairs of 0-9, a-f)") }
                payload = bytes
            } else {
                guard let data = FileManager.default.contents(atPath: file!) else { throw CLIError("cannot read \(file!)") }
                payload = Array(data)
            }
            guard payload.count <= Self.maximumPayload else {
                throw CLIError("the message is \(payload.count) bytes; the most one message can carry is \(Self.maximumPayload)")
            }
            let ids = try await client.send(to: recipient, [TypedMessage(type: type, payload: payload)])
            print(ids.map { Hex.encode($0) }.joined(separator: "\n"))
        }
    }
}

struct Recv: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print received messages, oldest first; with --follow, keep printing new ones as they arrive.")
    @OptionGroup var options: GlobalOptions
    @Flag(help: "Print JSON lines.") var json = false
    @Option(help: "Only messages from this node.") var from: String?
    @Option(help: "Stop after this many messages (waiting for new ones if needed).") var count: Int?
    @Option(help: "Stop after this many seconds.") var timeout: Double?
    @Flag(help: "Keep waiting for new messages.") var follow = false

    func run() async throws {
        let sender: PublicKey?
        do { sender = try from.map(parseNodeID) } catch let error as CLIError { fail(error.message) }
        if let count, count <= 0 { fail("--count must be at least 1") }
        if let timeout, timeout < 0 { fail("--timeout must not be negative") }
        let deadline = timeout.map { ContinuousClock.now + .milliseconds(Int64($0 * 1_000)) }
        try await withClient(options) { client in
            var after: UInt64 = 0
            var printed = 0
            let waitForMore = follow || count != nil
            while true {
                if let count, printed >= count { return }
                let remaining = deadline.map { ContinuousClock.now.duration(to: $0) }
                if let remaining, remaining <= .zero { return }
                let wait: Duration = waitForMore ? min(remaining ?? .seconds(30), .seconds(30)) : .zero
                let limit = UInt32(min(count.map { $0 - printed } ?? 10_000, 10_000))
                let batch = try await client.recv(afterRowID: after, from: sender, limit: limit, wait: wait)
                for message in batch {
                    printMessage(message)
                    printed += 1
                    after = max(after, message.rowID)
                }
                if batch.isEmpty && !waitForMore { return }
            }
        }
    }

    func printMessage(_ message: IncomingRecord) {
        let text = String(validating: message.payload, as: UTF8.self)
        let receivedAt = Timestamp.rfc3339(micros: message.receivedAtMicros)
        if json {
            var object = JSONObject()
            object["id"] = .string(Hex.encode(message.id))
            object["from"] = .string(message.from.hex)
            object["type"] = .number(Double(message.type))
            object["payload_hex"] = .string(Hex.encode(message.payload))
            if let text { object["text"] = .string(text) }
            object["received_at"] = .string(receivedAt)
            print(JSONValue.object(object).serialized)
        } else {
            let body = text.map { $0.replacingOccurrences(of: "\n", with: "\\n") } ?? "0x" + Hex.encode(message.payload)
            print("\(receivedAt) \(message.from.hex) type=\(message.type) \(body)")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show whether a sent message is queued, sent, delivered or expired.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "MSGID (32 hex characters) as printed by send") var id: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard let bytes = Hex.decode(id), bytes.count == 16 else { fail("\"\(id)\" is not a message id (32 hex characters)") }
        try await withClient(options) { client in
            let status = try await client.status(bytes)
            if json {
                var object = JSONObject()
                object["id"] = .string(Hex.encode(status.id))
                object["to"] = .string(status.recipient.hex)
                object["state"] = .string(status.state)
                object["link"] = status.link.map { .string($0) } ?? .null
                object["created_at"] = .string(Timestamp.rfc3339(micros: status.createdAtMicros))
                print(JSONValue.object(object).serialized)
            } else {
                print("\(status.state) to \(status.recipient.hex)\(status.link.map { " over \($0)" } ?? "")")
            }
        }
    }
}

struct Spool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Carry messages without a network: write bundle files for peers, or take bundles in.",
        discussion: "Bundles are sealed to each recipient's node key (Transports/Spool/SPOOL-FORMAT.md).",
        subcommands: [SpoolExport.self, SpoolImport.self])
}

struct SpoolExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write every message still owed to a peer (or to every peer), and receipts owed, as bundle files into DIR.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "The directory to write into (a USB stick, an uplink folder).") var dir: String
    @Option(help: "Only for this node.") var peer: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let recipient: PublicKey?
        do { recipient = try peer.map(parseNodeID) } catch let error as CLIError { fail(error.message) }
        let directory = absolute(dir)
        exitIfNodeStops(options, while: "exporting")
        try await withClient(options) { client in
            let reply = try await client.spoolExport(directory: directory, peer: recipient)
            if json {
                var object = JSONObject()
                object["bundles"] = .number(Double(reply.files.count))
                object["messages"] = .number(Double(reply.messages))
                object["receipts"] = .number(Double(reply.receipts))
                object["peers"] = .number(Double(reply.peers))
                object["files"] = .array(reply.files.map { .string($0) })
                print(JSONValue.object(object).serialized)
            } else {
                print("wrote \(reply.files.count) bundles to \(directory): \(reply.messages) messages, \(reply.receipts) receipts, for \(reply.peers) peers")
            }
        }
    }
}

struct SpoolImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Take in the bundle files in DIR that are sealed to this node; importing the same bundles again changes nothing.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "The directory to read.") var dir: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let directory = absolute(dir)
        exitIfNodeStops(options, while: "importing; import again once it runs (nothing is taken in twice)")
        try await withClient(options) { client in
            let reply = try await client.spoolImport(directory: directory)
            if json {
                var object = JSONObject()
                object["bundles_imported"] = .number(Double(reply.bundlesImported))
                object["bundles_already_imported"] = .number(Double(reply.bundlesAlreadyImported))
                object["bundles_for_another_node"] = .number(Double(reply.bundlesForAnotherNode))
                object["files_rejected"] = .number(Double(reply.filesRejected))
                object["messages_stored"] = .number(Double(reply.messagesStored))
                object["duplicates"] = .number(Double(reply.duplicates))
                object["receipts"] = .number(Double(reply.receipts))
                object["envelopes_rejected"] = .number(Double(reply.envelopesRejected))
                object["more_waiting"] = .bool(reply.moreWaiting)
                object["problems"] = .array(reply.problems.map { .string($0) })
                print(JSONValue.object(object).serialized)
            } else {
                print("imported \(reply.bundlesImported) bundles from \(directory): \(reply.messagesStored) messages stored, "
                      + "\(reply.duplicates) duplicates dropped, \(reply.receipts) receipts; \(reply.bundlesAlreadyImported) already imported, "
                      + "\(reply.bundlesForAnotherNode) for another node, \(reply.filesRejected) files and \(reply.envelopesRejected) envelopes rejected"
                      + (reply.moreWaiting ? "; more bundles wait, import again" : ""))
                for problem in reply.problems { print("  " + problem) }
            }
        }
    }
}

/// A spool command may take minutes, and a request to a node that died is only noticed when
/// its long timeout ends: watch lnpd's instance lock instead and say at once that it stopped.
func exitIfNodeStops(_ options: GlobalOptions, while doing: String) {
    let directory = options.dataDirectory
    guard FrontDoor.isPresent(dataDirectory: directory) else { return }  // withClient says it
    Task.detached {
        while true {
            try? await Task.sleep(for: .milliseconds(500))
            if !FrontDoor.isPresent(dataDirectory: directory) { fail("lnpd stopped while \(doing)") }
        }
    }
}

/// The node resolves paths itself, and may run with another working directory.
func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}
