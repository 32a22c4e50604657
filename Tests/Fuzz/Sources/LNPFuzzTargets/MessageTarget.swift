import LNPWire

/// `message`: the whole input is one Lightning message (`[u16:type][payload]`).
///
/// Properties checked for every input:
/// - decoding from an array, from a slice with non-zero indices and from a raw buffer agree
///   (same message, or the same error);
/// - errors point inside the input.
/// For every message that decodes:
/// - `checkEncodable()` accepts it and `encode()` is `encodedLength` bytes long;
/// - decoding the encoding gives an equal message, and encoding that again the same bytes;
/// - the encoding equals the input byte for byte, except that `init`'s feature bitmaps
///   are stored minimally (leading zero bytes dropped), which the oracle reproduces;
/// - `init`: `decodedRemoteAddress()` succeeds whenever the record is present (decoding
///   already validated it) and re-encodes to the record's bytes; `validateFeatures` and
///   the feature-vector algebra agree with an independent reading of the bits;
/// - `error`/`warning`/`ping`/`pong`: the small helpers are consistent.
public enum MessageTarget {
    public static func prepare() {}

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        let input = Array(buffer)
        let decoded = decodeAllWays(input, buffer)
        guard let message = decoded else { return }

        do {
            try message.checkEncodable()
        } catch {
            fuzzFailure("decoded \(input.hex) but checkEncodable() rejects it: \(error)")
        }
        let encoded = message.encode()
        fuzzCheck(encoded.count == message.encodedLength, "encodedLength \(message.encodedLength) but encode() gave \(encoded.count) bytes")
        let expected = canonicalEncoding(of: input, type: message.type)
        fuzzCheck(encoded == expected, "\(input.hex) re-encodes as \(encoded.hex), expected \(expected.hex)")
        guard let again = try? Message.decode(encoded) else {
            fuzzFailure("re-encoding \(encoded.hex) of \(input.hex) does not decode")
        }
        fuzzCheck(again == message, "re-decoding \(encoded.hex) gives a different message")
        fuzzCheck(again.encode() == encoded, "encoding is not a fixed point for \(input.hex)")
        var writer = WireWriter(bytes: [0x42])
        message.encode(into: &writer)
        fuzzCheck(writer.bytes == [0x42] + encoded, "encode(into:) does not append the same bytes")

        switch message {
        case let .`init`(body): checkInit(body, input: input)
        case let .error(body): checkDiagnostic(body)
        case let .warning(body): checkDiagnostic(body)
        case let .ping(ping):
            if let reply = ping.reply {
                fuzzCheck(ping.expectsPong && reply.answers(ping), "ping's reply does not answer it")
            } else {
                fuzzCheck(!ping.expectsPong, "ping expects a pong but has no reply")
            }
        case let .pong(pong):
            let ping = Ping(numPongBytes: UInt16(truncatingIfNeeded: pong.ignored.count))
            fuzzCheck(pong.answers(ping) == (pong.ignored.count < Int(Ping.noPongThreshold)), "pong.answers inconsistent")
        case let .unknownOdd(type, payload):
            fuzzCheck(type & 1 == 1 && !MessageType.known.contains(type), "unknownOdd with type \(type)")
            fuzzCheck(payload == Array(input.dropFirst(2)), "unknownOdd payload differs from the input")
        }
    }

    /// Decodes through the array, slice and raw-buffer entry points, which must agree.
    static func decodeAllWays(_ input: [UInt8], _ buffer: UnsafeRawBufferPointer) -> Message? {
        let fromArray: Result<Message, WireError> = Result { () throws(WireError) in try Message.decode(input) }
        let padded = [0xee, 0xee, 0xee] + input + [0x00]
        let fromSlice: Result<Message, WireError> = Result { () throws(WireError) in
            try Message.decode(padded[3..<(3 + input.count)])
        }
        let fromBuffer: Result<Message, WireError> = Result { () throws(WireError) in try Message.decode(copying: buffer) }
        fuzzCheck(fromArray == fromSlice, "array and slice decoding of \(input.hex) disagree: \(fromArray) vs \(fromSlice)")
        fuzzCheck(fromArray == fromBuffer, "array and buffer decoding of \(input.hex) disagree")
        switch fromArray {
        case let .success(message):
            return message
        case let .failure(error):
            fuzzCheck((0...input.count).contains(error.offset), "error offset \(error.offset) outside \(input.count) bytes: \(error)")
            _ = error.description
            return nil
        }
    }

    /// The input with `init`'s two feature bitmaps made minimal; other messages unchanged.
    /// Only called for inputs that decoded, so the length prefixes are in range.
    static func canonicalEncoding(of input: [UInt8], type: UInt16) -> [UInt8] {
        guard type == MessageType.`init` else { return input }
        var output: [UInt8] = [input[0], input[1]]
        var index = 2
        for _ in 0..<2 {
            let length = Int(input[index]) << 8 | Int(input[index + 1])
            var bitmap = input[(index + 2)..<(index + 2 + length)]
            while bitmap.first == 0 { bitmap = bitmap.dropFirst() }
            output += [UInt8(bitmap.count >> 8), UInt8(bitmap.count & 0xff)]
            output += bitmap
            index += 2 + length
        }
        output += input[index...]
        return output
    }

    static let knownBitSets: [Set<Int>] = [
        [],
        Feature.bits(of: Feature.bolt9),
        Feature.bits(of: Feature.all),
        // Only the optional bits of a few features, and one feature whose dependency is unknown.
        [Feature.basicMPP.oddBit, Feature.optionZeroconf.oddBit, Feature.lnpLargeFrames.oddBit, 101],
    ]

    static func checkInit(_ message: InitMessage, input: [UInt8]) {
        // remote_addr was validated while decoding, so it must parse again here.
        do {
            if let address = try message.decodedRemoteAddress() {
                guard let raw = message.remoteAddress else { fuzzFailure("address without raw bytes") }
                fuzzCheck(address.encode() == raw, "remote_addr \(raw.hex) re-encodes as \(address.encode().hex)")
                fuzzCheck(address.encodedLength == raw.count, "NetworkAddress.encodedLength wrong for \(raw.hex)")
                do { try address.checkEncodable() } catch { fuzzFailure("decoded address \(raw.hex) not encodable: \(error)") }
                _ = address.description
            } else {
                fuzzCheck(message.remoteAddress == nil, "remote_addr present but decodedRemoteAddress() is nil")
            }
        } catch {
            fuzzFailure("init \(input.hex) decoded but its remote_addr does not: \(error)")
        }
        for chain in message.networks ?? [] {
            fuzzCheck(chain.count == InitMessage.chainHashLength, "network chain hash of \(chain.count) bytes")
        }

        let global = message.globalFeatures
        let local = message.features
        let combined = message.combinedFeatures
        checkVector(global)
        checkVector(local)
        checkVector(combined)
        let globalBits = Set(global.setBits)
        let localBits = Set(local.setBits)
        fuzzCheck(Set(combined.setBits) == globalBits.union(localBits), "combinedFeatures is not the union of the bits")
        fuzzCheck(Set(global.intersection(local).setBits) == globalBits.intersection(localBits), "intersection of the bits is wrong")
        fuzzCheck(global.union(local) == local.union(global), "union is not commutative")

        for known in knownBitSets {
            checkValidation(message, combined: combined, known: known)
        }
    }

    /// Set bits, `isSet`, minimality and the bits round trip agree.
    static func checkVector(_ vector: FeatureVector) {
        fuzzCheck(vector.bytes.first != 0, "feature vector \(vector.bytes.hex) is not minimal")
        let bits = vector.setBits
        fuzzCheck(bits == bits.sorted() && Set(bits).count == bits.count, "setBits not strictly ascending")
        fuzzCheck(bits.allSatisfy(vector.isSet), "setBits reports a bit isSet denies")
        fuzzCheck(FeatureVector(bits: bits) == vector, "FeatureVector(bits: setBits) differs")
        if let highest = bits.last {
            fuzzCheck(!vector.isSet(highest + 1) && !vector.isSet(vector.bytes.count * 8), "bits beyond the top are set")
            var cleared = vector
            cleared.clear(highest)
            fuzzCheck(cleared.setBits == Array(bits.dropLast()), "clear(\(highest)) removed the wrong bits")
            fuzzCheck(cleared.bytes.first != 0, "clear left a leading zero byte")
        }
        _ = vector.description
    }

    /// `validateFeatures` against the rules read directly from the bits.
    static func checkValidation(_ message: InitMessage, combined: FeatureVector, known: Set<Int>) {
        let isKnown = { (bit: Int) in known.contains(bit) || known.contains(bit ^ 1) }
        let unknownRequired = combined.setBits.first { $0 % 2 == 0 && !isKnown($0) }
        var missingDependency: (feature: Feature, requires: Feature)?
        for feature in Feature.all where combined.supports(feature) && isKnown(feature.evenBit) {
            if let dependency = feature.dependencies.first(where: { !combined.supports($0) }) {
                missingDependency = (feature, dependency)
                break
            }
        }
        do {
            try message.validateFeatures(known: known)
            fuzzCheck(unknownRequired == nil, "unknown required bit \(unknownRequired ?? -1) accepted with known \(known.sorted())")
            fuzzCheck(missingDependency == nil, "missing dependency of \(missingDependency?.feature.name ?? "") accepted")
        } catch {
            fuzzCheck(error.context == "init.features", "validation error context \(error.context)")
            fuzzCheck(combined.bytes.indices.contains(error.offset), "validation error offset \(error.offset) outside the bitmap")
            switch error.kind {
            case let .unknownRequiredFeature(bit):
                fuzzCheck(bit == unknownRequired, "reported unknown required bit \(bit), expected \(String(describing: unknownRequired))")
                fuzzCheck(error.offset == combined.bytes.count - 1 - bit / 8, "offset of bit \(bit) is wrong")
            case let .featureDependencyMissing(feature, requires):
                fuzzCheck(unknownRequired == nil, "dependency reported before unknown required bit")
                fuzzCheck(
                    missingDependency.map { $0.feature.evenBit == feature && $0.requires.evenBit == requires } == true,
                    "reported missing dependency \(feature) -> \(requires), expected \(String(describing: missingDependency))")
            default:
                fuzzFailure("unexpected validation error \(error)")
            }
            _ = error.description
        }
    }

    static func checkDiagnostic<M: ChannelDiagnosticMessage>(_ message: M) {
        fuzzCheck(message.channelID.count == M.channelIDLength, "channel_id of \(message.channelID.count) bytes")
        fuzzCheck(message.isForAllChannels == message.channelID.allSatisfy { $0 == 0 }, "isForAllChannels wrong")
        let printable = message.printableData
        let expectedCount = message.data.reduce(0) { $0 + ((32...126).contains($1) ? 1 : 4) }
        fuzzCheck(printable.utf8.count == expectedCount, "printableData has \(printable.utf8.count) bytes, expected \(expectedCount)")
        fuzzCheck(printable.utf8.allSatisfy { (32...126).contains($0) }, "printableData is not printable")
    }
}
