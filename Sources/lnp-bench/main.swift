import Foundation
import Dispatch
import LNPCrypto
import LNPSession

/// `lnp-bench session`: the figures of the protocol core, one JSON line each.
/// Each figure is the best of several timed rounds: this machine is shared, and the best
/// round is the one least disturbed by other work.

struct Figure {
    let name: String
    let value: Double
    let unit: String

    var json: String {
        let formatted = value >= 100 ? String(Int(value.rounded())) : String(format2(value))
        return #"{"name": "\#(name)", "value": \#(formatted), "unit": "\#(unit)"}"#
    }

    private func format2(_ v: Double) -> String {
        let scaled = (v * 1000).rounded() / 1000
        return "\(scaled)"
    }
}

@inline(never)
func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// Runs `body(iterations)` for about `seconds`, `rounds` times; returns the best rate of
/// `units per iteration` per second.
func measure(rounds: Int = 5, seconds: Double = 0.4, unitsPerIteration: Double = 1, _ body: (Int) -> Void) -> Double {
    // Calibrate the iteration count to the time budget.
    var iterations = 1
    while true {
        let start = now()
        body(iterations)
        let elapsed = Double(now() - start) / 1e9
        if elapsed > seconds / 4 || iterations > 1 << 30 {
            iterations = max(1, Int(Double(iterations) * seconds / max(elapsed, 1e-9)))
            break
        }
        iterations *= 4
    }
    var best = 0.0
    for _ in 0..<rounds {
        let start = now()
        body(iterations)
        let elapsed = Double(now() - start) / 1e9
        best = max(best, Double(iterations) * unitsPerIteration / elapsed)
    }
    return best
}

func sessionFigures(quick: Bool) throws -> [Figure] {
    let rounds = quick ? 2 : 5
    let seconds = quick ? 0.15 : 0.4
    let initiatorStatic = PrivateKey.generate()
    let responderStatic = PrivateKey.generate()
    let responderPublic = responderStatic.publicKey
    var figures: [Figure] = []

    let handshakes = measure(rounds: rounds, seconds: seconds) { n in
        for _ in 0..<n {
            var initiator = HandshakeInitiator(localStatic: initiatorStatic, remoteStatic: responderPublic)
            var responder = HandshakeResponder(localStatic: responderStatic)
            do {
                let one = try initiator.makeActOne()
                let two = try responder.receiveActOne(one)
                let (three, _) = try initiator.receiveActTwo(two)
                blackHole(try responder.receiveActThree(three))
            } catch {
                fatalError("handshake failed: \(error)")
            }
        }
    }
    figures.append(Figure(name: "session.handshake", value: handshakes, unit: "handshakes/s"))

    let key = SecureRandom.bytes(32)
    let chainingKey = SecureRandom.bytes(32)
    for size in [100, 65_535] {
        let message = SecureRandom.bytes(size)
        var encoder = FrameEncoder(cipher: CipherState(testKey: key, chainingKey: chainingKey))
        var output = [UInt8]()
        output.reserveCapacity(size + 64)
        let encrypt = measure(rounds: rounds, seconds: seconds) { n in
            for _ in 0..<n {
                output.removeAll(keepingCapacity: true)
                try! encoder.encrypt(message, appendingTo: &output)
            }
            blackHole(output)
        }
        figures.append(Figure(name: "session.encrypt.\(size)", value: encrypt, unit: "msgs/s"))

        // Decrypt a stream produced by a fresh encoder with the same keys, fed in 64 KiB
        // reads as a socket would deliver them. The stream is about 1 MiB, decoded again
        // by a fresh decoder each pass, so it is cache-hot like a just-read socket buffer
        // (and like the C ceiling's buffers), not streamed from RAM.
        let framesPerPass = max(16, 1_048_576 / (size + 34))
        var streamEncoder = FrameEncoder(cipher: CipherState(testKey: key, chainingKey: chainingKey))
        var stream = [UInt8]()
        for _ in 0..<framesPerPass { try! streamEncoder.encrypt(message, appendingTo: &stream) }
        let best = measure(rounds: rounds, seconds: seconds, unitsPerIteration: Double(framesPerPass)) { passes in
            for _ in 0..<passes {
                var decoder = FrameDecoder(cipher: CipherState(testKey: key, chainingKey: chainingKey))
                var decoded = 0
                stream.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        let end = min(offset + 65_536, raw.count)
                        decoder.append(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                        offset = end
                        while let length = try! decoder.withNextMessage({ $0.count }) { decoded += length == size ? 1 : 0 }
                    }
                }
                precondition(decoded == framesPerPass)
            }
        }
        figures.append(Figure(name: "session.decrypt.\(size)", value: best, unit: "msgs/s"))
    }

    let large = SecureRandom.bytes(1_048_576)
    var largeEncoder = FrameEncoder(cipher: CipherState(testKey: key, chainingKey: chainingKey), format: .large)
    var largeOutput = [UInt8]()
    largeOutput.reserveCapacity(large.count + 64)
    let largeRate = measure(rounds: rounds, seconds: seconds, unitsPerIteration: Double(large.count)) { n in
        for _ in 0..<n {
            largeOutput.removeAll(keepingCapacity: true)
            try! largeEncoder.encrypt(large, appendingTo: &largeOutput)
        }
        blackHole(largeOutput)
    }
    figures.append(Figure(name: "session.encrypt.large.1048576", value: largeRate, unit: "bytes/s"))
    return figures
}

/// The issue's targets as fractions of the C ceiling measured in the same run.
let targets: [String: Double] = [
    "session.handshake": 0.80,
    "session.encrypt.100": 0.70, "session.decrypt.100": 0.70,
    "session.encrypt.65535": 0.85, "session.decrypt.65535": 0.85,
    "session.encrypt.large.1048576": 0.85,
]

/// Reads the C ceiling's JSON lines: {"name": "c.<figure>", "value": N, ...}.
func readCeiling(_ path: String) -> [String: Double] {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else { return [:] }
    var values: [String: Double] = [:]
    for line in text.split(separator: "\n") {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let name = object["name"] as? String, let value = object["value"] as? Double else { continue }
        values[name] = value
    }
    return values
}

var arguments = Array(CommandLine.arguments.dropFirst())
let quick = arguments.contains("--quick")
var ceiling: [String: Double] = [:]
if let index = arguments.firstIndex(of: "--ceiling"), index + 1 < arguments.count {
    ceiling = readCeiling(arguments[index + 1])
}
switch arguments.first {
case "session":
    let figures = try sessionFigures(quick: quick)
    for figure in figures { print(figure.json) }
    for figure in figures {
        guard let c = ceiling["c." + figure.name], c > 0 else { continue }
        let ratio = figure.value / c
        let target = targets[figure.name] ?? 0
        print(#"{"name": "\#(figure.name).vs_c", "value": \#((ratio * 1000).rounded() / 1000), "unit": "ratio", "target": \#(target), "met": \#(ratio >= target)}"#)
    }
case "node", "udp":
    /// The issue's absolute targets for the node figures, and the figure's share of the C
    /// ceiling (Scripts/ceiling/node_ceiling.c) measured in the same run.
    func printNodeFigure(_ figure: Figure) {
        let absoluteTargets: [String: Double] = ["node.msgs.100": 250_000, "node.mbps.large": 1_000]
        if let target = absoluteTargets[figure.name] {
            print(#"{"name": "\#(figure.name)", "value": \#(Int(figure.value.rounded())), "unit": "\#(figure.unit)", "target": \#(Int(target)), "met": \#(figure.value >= target)}"#)
        } else {
            print(figure.json)
        }
        if let c = ceiling["c." + figure.name], c > 0 {
            print(#"{"name": "\#(figure.name).vs_c", "value": \#((figure.value / c * 1000).rounded() / 1000), "unit": "ratio"}"#)
        }
    }
    // Two lnpd joined over TCP (node) or UDP (udp, for Scripts/bench links): messages
    // through node A's API, counted once stored on B.
    func option(_ name: String) -> String? {
        guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }
    let mode = arguments[0]
    guard let from = option("--from"), let to = option("--to") else {
        FileHandle.standardError.write(Data("usage: lnp-bench \(mode) --from DATA_DIR --to DATA_DIR [--quick]\n".utf8))
        exit(2)
    }
    do {
        if mode == "udp" {
            print(try await nodeFigure(from: from, to: to, count: quick ? 20_000 : 100_000, size: 100, name: "udp.msgs.100", unit: "msgs/s").json)
        } else {
            // `--only small|large` runs one figure (for profiling one path).
            let only = option("--only")
            if only != "large" {
                let small = try await nodeFigure(from: from, to: to, count: quick ? 50_000 : 500_000, size: 100, name: "node.msgs.100", unit: "msgs/s")
                printNodeFigure(small)
            }
            if only != "small" {
                let large = try await nodeFigure(from: from, to: to, count: quick ? 100 : 1_000, size: 1 << 20, name: "node.mbps.large", unit: "MB/s")
                printNodeFigure(large)
            }
        }
    } catch {
        FileHandle.standardError.write(Data("lnp-bench \(mode): \(error)\n".utf8))
        exit(1)
    }
default:
    FileHandle.standardError.write(Data("usage: lnp-bench session [--quick] [--ceiling FILE] | node|udp --from DIR --to DIR [--quick] [--only small|large] [--ceiling FILE]\n".utf8))
    exit(2)
}
