// lnp-serial-bench: the serial line figures for `Scripts/bench links`, one JSON line each on standard
// output (details on standard error): bytes on the line per 100-byte message, and payload
// utilisation of a 115,200 baud line in a bulk transfer between two real SerialTransports.
import Foundation
import Glibc
import LNPCrypto
import LNPSession
import LNPTransport
import LNPTransportSerial
import LNPWire

/// Two in-memory datagram sessions with the serial preset, handshake done.
func establishedPair(policy: DatagramPolicy) throws -> (DatagramSession, DatagramSession) {
    let initiatorKey = PrivateKey.generate(), responderKey = PrivateKey.generate()
    var initiator = try DatagramSession(role: .initiator(remoteStatic: responderKey.publicKey), localStatic: initiatorKey, policy: policy)
    var responder = try DatagramSession(role: .responder, localStatic: responderKey, policy: policy)
    let now = ContinuousClock.now
    var toResponder = initiator.start(now: now), toInitiator: [DatagramSession.Action] = []
    while !toResponder.isEmpty || !toInitiator.isEmpty {
        toInitiator = []
        for case let .send(datagram) in toResponder { toInitiator += responder.receive(datagram, now: now) }
        toResponder = []
        for case let .send(datagram) in toInitiator { toResponder += initiator.receive(datagram, now: now) }
    }
    return (initiator, responder)
}

func lineBytes(messages: [[UInt8]], policy: DatagramPolicy) throws -> Int {
    var (initiator, responder) = try establishedPair(policy: policy)
    var line: [UInt8] = []
    var decoder = LineFrameDecoder(maximumDatagramSize: policy.maximumDatagramSize)
    var delivered = 0
    for message in messages {
        var frames: [UInt8] = []
        for datagram in try initiator.send(message, now: .now) { LineFraming.encode(datagram, appendingTo: &frames) }
        line += frames
        for datagram in decoder.append(frames) {
            for action in responder.receive(datagram, now: .now) {
                if case .deliver = action { delivered += 1 }
            }
        }
    }
    precondition(delivered == messages.count, "the figures must come from messages that really decode")
    return line.count
}

/// Details go to standard error; standard output is one JSON line per figure.
func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

let policy = DatagramPolicy.serial()
let message100 = [UInt8](repeating: 0x42, count: 100)
let one = try lineBytes(messages: [message100], policy: policy)
let quick = CommandLine.arguments.contains("--quick")
note("serial preset: datagram \(policy.maximumDatagramSize) bytes, whole-message capacity \(policy.wholeMessageCapacity), fragment capacity \(policy.fragmentCapacity)")
// One more byte (a leading delimiter) for the first frame after a quiet spell.
print(#"{"name": "serial.overhead.100", "value": \#(one - 100), "unit": "bytes", "target": 48, "met": \#(one - 100 <= 48)}"#)

for size in [policy.wholeMessageCapacity, 65_535, 1000] {
    let count = max(1, (1 << 20) / size)
    let messages = (0..<count).map { _ in [UInt8](repeating: 0x42, count: size) }
    let bytes = try lineBytes(messages: messages, policy: policy)
    let payload = size * count
    note(String(format: "bulk, %d messages of %d bytes: payload/line = %d/%d = %.4f", count, size, payload, bytes,
                Double(payload) / Double(bytes)))
}

// Real time through two socat pty pairs joined by a relay paced at 115,200 baud, 8N1 (10 bits a byte):
// socat's ispeed/ospeed do nothing on ptys, so the pacing is this relay's.
final class Socat {
    let process = Process()
    let directory: String
    init() throws {
        directory = NSTemporaryDirectory() + "lnp-figures-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        process.arguments = ["pty,raw,echo=0,link=\(directory)/A", "pty,raw,echo=0,link=\(directory)/B"]
        try process.run()
        while !FileManager.default.fileExists(atPath: directory + "/B") || !FileManager.default.fileExists(atPath: directory + "/A") { usleep(10_000) }
    }
    func stop() { kill(process.processIdentifier, SIGKILL); process.waitUntilExit(); try? FileManager.default.removeItem(atPath: directory) }
}

func rawOpen(_ path: String) -> Int32 {
    let fd = open(path, O_RDWR | O_NOCTTY)
    var settings = termios()
    tcgetattr(fd, &settings)
    cfmakeraw(&settings)
    tcsetattr(fd, TCSANOW, &settings)
    return fd
}

/// Copies `from` to `to` at no more than `bytesPerSecond`.
func pacedRelay(from: Int32, to: Int32, bytesPerSecond: Double) {
    let thread = Thread {
        var buffer = [UInt8](repeating: 0, count: 256)
        let start = ContinuousClock.now
        var sent = 0.0
        while true {
            let count = read(from, &buffer, buffer.count)
            if count <= 0 { return }
            sent += Double(count)
            let due = start + .seconds(sent / bytesPerSecond)
            let wait = due - ContinuousClock.now
            if wait > .zero { usleep(UInt32(wait.components.attoseconds / 1_000_000_000_000 + wait.components.seconds * 1_000_000)) }
            var offset = 0
            while offset < count { offset += max(0, buffer[offset..<count].withUnsafeBytes { write(to, $0.baseAddress, $0.count) }) }
        }
    }
    thread.start()
}

let left = try Socat(), right = try Socat()
let relayLeft = rawOpen(left.directory + "/B"), relayRight = rawOpen(right.directory + "/A")
pacedRelay(from: relayLeft, to: relayRight, bytesPerSecond: 11_520)
pacedRelay(from: relayRight, to: relayLeft, bytesPerSecond: 11_520)

let features = FeatureVector(features: [.varOnionOptin])
let aliceKey = PrivateKey.generate(), bobKey = PrivateKey.generate()
/// Payload bytes received and when the last arrived.
final class Arrivals: @unchecked Sendable {
    private let lock = NSLock()
    private var payload = 0
    private var last = ContinuousClock.now
    func add(_ count: Int) { lock.withLock { payload += count; last = .now } }
    var snapshot: (payload: Int, last: ContinuousClock.Instant) { lock.withLock { (payload, last) } }
}
let arrivals = Arrivals()
let alice = SerialTransport(configuration: SerialTransportConfiguration(
    localKey: aliceKey, localInit: InitMessage(features: features),
    listen: [try ListenAddress(parsing: "serial://\(right.directory)/B?baud=115200")])) { event in
    if case let .message(_, bytes) = event {
        arrivals.add(bytes.count)
    }
}
let bob = SerialTransport(configuration: SerialTransportConfiguration(localKey: bobKey, localInit: InitMessage(features: features))) { _ in }
try await alice.start()
_ = try await bob.connect(to: try PeerAddress(parsing: "serial://\(aliceKey.publicKey.hex)@\(left.directory)/A?baud=115200"), persistent: false)
let rtt = try await bob.ping(aliceKey.publicKey, pongBytes: 0)
note("ping through the 115,200 baud relay: \(rtt)")

let messageSize = policy.wholeMessageCapacity
let messageCount = quick ? 60 : 200
let total = messageCount * messageSize
let started = ContinuousClock.now
for _ in 0..<messageCount {
    while try bob.send([[0x80, 0x01] + [UInt8](repeating: 0x42, count: messageSize - 2)], to: aliceKey.publicKey) == .queueFull {
        try await Task.sleep(for: .milliseconds(5))
    }
}
while arrivals.snapshot.payload < total {
    try await Task.sleep(for: .milliseconds(10))
}
let elapsed = arrivals.snapshot.last - started
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
let lineStats = alice.lineStatistics(path: "\(right.directory)/B")
let utilisation = Double(total) / seconds / 11_520
note(String(format: "real time, %d messages of %d bytes through the paced relay: %.2f s, %.0f payload bytes/s", messageCount, messageSize, seconds, Double(total) / seconds))
note("line bytes read by the receiver: \(lineStats?.bytesRead ?? -1), frames dropped: \(lineStats?.framesDropped ?? -1)")
print(#"{"name": "serial.utilisation", "value": \#((utilisation * 1000).rounded() / 1000), "unit": "fraction of 115200 baud", "target": 0.9, "met": \#(utilisation >= 0.9)}"#)
await bob.shutdown()
await alice.shutdown()
close(relayLeft); close(relayRight)
left.stop(); right.stop()
