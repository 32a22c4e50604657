import Benchmark
import LNPCrypto
import LNPSession

// The protocol core of LNP Node: the BOLT-8 handshake, the transport frame codec and the
// secp256k1 operations behind them. The session figures mirror `lnp-bench session`.
//
// Units of `throughput` (per second, p50 is the figure to track):
//   session.handshake             complete handshakes (both sides)
//   session.encrypt.100           messages (scalingFactor .kilo: 1000 messages per iteration)
//   session.encrypt.65535         messages
//   session.decrypt.<size>        passes over a ~1 MiB stream (see `decryptStreamFrames`)
//   session.encrypt.large.1048576 1 MiB messages (= MiB/s)
//   crypto.*                      operations

/// Frames in the pre-encrypted stream of `session.decrypt.<size>`: about 1 MiB of frames,
/// at least 16 (the same sizing as lnp-bench). 100 bytes: 7825 frames; 65535 bytes: 16.
func decryptStreamFrames(messageSize: Int) -> Int {
    max(16, 1_048_576 / (messageSize + 34))
}

func configuration(
    scalingFactor: BenchmarkScalingFactor = .one,
    maxDuration: Duration = .seconds(2)
) -> Benchmark.Configuration {
    .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 3,
        scalingFactor: scalingFactor,
        maxDuration: maxDuration,
        maxIterations: 1_000_000
    )
}

let benchmarks: @Sendable () -> Void = {
    // Shared keys; generated once per process, outside every measurement.
    let key = SecureRandom.bytes(32)
    let chainingKey = SecureRandom.bytes(32)
    let initiatorStatic = PrivateKey.generate()
    let responderStatic = PrivateKey.generate()
    let responderPublic = responderStatic.publicKey

    // MARK: Handshake

    Benchmark("session.handshake", configuration: configuration()) { benchmark in
        for _ in benchmark.scaledIterations {
            var initiator = HandshakeInitiator(localStatic: initiatorStatic, remoteStatic: responderPublic)
            var responder = HandshakeResponder(localStatic: responderStatic)
            let one = try initiator.makeActOne()
            let two = try responder.receiveActOne(one)
            let (three, initiatorResult) = try initiator.receiveActTwo(two)
            let responderResult = try responder.receiveActThree(three)
            blackHole(initiatorResult)
            blackHole(responderResult)
        }
    }

    // MARK: Encrypt (BOLT framing), into a reused output buffer

    for (size, scalingFactor) in [(100, BenchmarkScalingFactor.kilo), (65_535, .one)] {
        let message = SecureRandom.bytes(size)
        var encoder = FrameEncoder(cipher: CipherState(testKey: key, chainingKey: chainingKey))
        var output = [UInt8]()
        output.reserveCapacity(FrameFormat.bolt.frameSize(forMessageLength: size))
        Benchmark("session.encrypt.\(size)", configuration: configuration(scalingFactor: scalingFactor)) { benchmark in
            for _ in benchmark.scaledIterations {
                output.removeAll(keepingCapacity: true)
                try encoder.encrypt(message, appendingTo: &output)
            }
            blackHole(output)
        }
    }

    // MARK: Decrypt (BOLT framing), a ~1 MiB stream fed in 64 KiB reads

    for size in [100, 65_535] {
        let frames = decryptStreamFrames(messageSize: size)
        let message = SecureRandom.bytes(size)
        var streamEncoder = FrameEncoder(cipher: CipherState(testKey: key, chainingKey: chainingKey))
        var stream = [UInt8]()
        stream.reserveCapacity(frames * FrameFormat.bolt.frameSize(forMessageLength: size))
        for _ in 0..<frames {
            try! streamEncoder.encrypt(message, appendingTo: &stream)
        }
        Benchmark("session.decrypt.\(size)", configuration: configuration()) { benchmark in
            for _ in benchmark.scaledIterations {
                // A fresh decoder per pass: the stream starts at nonce 0 with the same keys.
                var decoder = FrameDecoder(cipher: CipherState(testKey: key, chainingKey: chainingKey))
                var decoded = 0
                try stream.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        let end = min(offset + 65_536, raw.count)
                        decoder.append(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                        offset = end
                        while let length = try decoder.withNextMessage({ $0.count }) {
                            if length == size { decoded += 1 }
                        }
                    }
                }
                guard decoded == frames else {
                    benchmark.error("decoded \(decoded) of \(frames) frames")
                    return
                }
            }
        }
    }

    // MARK: Encrypt (large framing), one 1 MiB message

    do {
        let size = 1_048_576
        let message = SecureRandom.bytes(size)
        var encoder = FrameEncoder(cipher: CipherState(testKey: key, chainingKey: chainingKey), format: .large)
        var output = [UInt8]()
        output.reserveCapacity(FrameFormat.large.frameSize(forMessageLength: size))
        Benchmark("session.encrypt.large.\(size)", configuration: configuration()) { benchmark in
            for _ in benchmark.scaledIterations {
                output.removeAll(keepingCapacity: true)
                try encoder.encrypt(message, appendingTo: &output)
            }
            blackHole(output)
        }
    }

    // MARK: secp256k1

    let remotePublic = PrivateKey.generate().publicKey
    Benchmark("crypto.ecdh", configuration: configuration(maxDuration: .seconds(1))) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(initiatorStatic.sharedSecret(with: remotePublic))
        }
    }

    let digest = Hashing.sha256(Array("lnp-node benchmark digest".utf8))
    Benchmark("crypto.ecdsa.sign", configuration: configuration(maxDuration: .seconds(1))) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try initiatorStatic.sign(digest: digest))
        }
    }

    let signature = try! initiatorStatic.sign(digest: digest)
    let signerPublic = initiatorStatic.publicKey
    precondition(signerPublic.verify(signature, digest: digest), "ECDSA signature does not verify")
    Benchmark("crypto.ecdsa.verify", configuration: configuration(maxDuration: .seconds(1))) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(signerPublic.verify(signature, digest: digest))
        }
    }

    let schnorrSignature = try! initiatorStatic.signSchnorr(message: digest)
    let xOnly = signerPublic.xOnly.key
    precondition(xOnly.verifySchnorr(schnorrSignature, message: digest), "Schnorr signature does not verify")
    Benchmark("crypto.schnorr.verify", configuration: configuration(maxDuration: .seconds(1))) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(xOnly.verifySchnorr(schnorrSignature, message: digest))
        }
    }
}
