import LNPSession

/// `lineframing`: `LineFrameDecoder` and `LineFraming` (COBS + CRC-32 frames on a serial
/// line). Layout: `[mode][size][4 chunk-pattern bytes][rest]`; `size` picks the decoder's
/// largest datagram (`16 + size * 4`, so 16 to 1036 bytes).
/// - mode even: the rest is line noise, fed in pieces;
/// - mode odd: the rest is `[noise length][noise][planned datagrams]` (see `planMessages`):
///   the noise, a delimiter, then every datagram encoded, fed in pieces.
///
/// Properties checked:
/// - the decoder agrees with a reference reading of the stream (split at 0x00, each
///   segment COBS-decoded and CRC-checked by `decodeFrame`, over-long ones dropped as
///   oversized): same datagrams, same `framesDecoded`, same drop counts per reason, and
///   the same bytes left buffered; pieces of any size give the same result;
/// - memory stays within one frame: `bufferedByteCount <= maximumEncodedFrameLength` after
///   every piece, and no datagram exceeds `maximumDatagramSize`;
/// - each decoded datagram encodes to a frame that decodes back to it;
/// - round trip: after the noise and one delimiter, every encoded datagram comes back
///   intact (oversized ones are dropped and counted as such, empty ones as too short,
///   nothing else is lost), and
///   each frame is within `maximumEncodedSize` (exactly `length + 6` up to 249 bytes).
public enum LineFramingTarget {
    public static func prepare() {}

    struct Outcome: Equatable {
        var datagrams: [[UInt8]] = []
        var framesDecoded = 0
        var drops: [LineFrameError: Int] = [:]
        var buffered = 0
    }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        let mode = input.byte()
        let maximumDatagramSize = 16 + Int(input.byte()) * 4
        let pattern = input.take(4)
        var stream: [UInt8]
        var planned: [[UInt8]] = []
        if mode & 1 == 0 {
            stream = input.rest()
        } else {
            stream = input.take(Int(input.byte()))
            stream.append(LineFraming.delimiter)
            planned = planMessages(&input, maximumMessages: 32, byteBudget: 16_384).map(\.bytes)
            for datagram in planned {
                let before = stream.count
                LineFraming.encode(datagram, appendingTo: &stream)
                let size = stream.count - before
                let bound = LineFraming.maximumEncodedSize(forDatagramLength: datagram.count)
                fuzzCheck(size <= bound, "a \(datagram.count)-byte datagram took \(size) bytes, bound \(bound)")
                fuzzCheck(datagram.count > 249 || size == datagram.count + 6, "a \(datagram.count)-byte datagram took \(size) bytes")
                fuzzCheck(!stream[before..<(stream.count - 1)].contains(0) && stream.last == 0, "frame bytes contain a delimiter")
                fuzzCheck(LineFraming.encode(datagram) == Array(stream[before...]), "the two encode entry points differ")
            }
        }

        let whole = decode([stream[...]], maximumDatagramSize: maximumDatagramSize)
        let chunked = decode(chunks(of: stream, pattern: pattern), maximumDatagramSize: maximumDatagramSize)
        fuzzCheck(chunked == whole, "chunked decoding differs from one-piece decoding")
        let expected = reference(stream, maximumDatagramSize: maximumDatagramSize)
        fuzzCheck(whole == expected, "decoder \(whole) disagrees with the reference \(expected)")

        for datagram in whole.datagrams {
            let frame = LineFraming.encode(datagram)
            do {
                fuzzCheck(try LineFraming.decodeFrame(frame.dropLast()) == datagram, "re-encoded datagram decodes differently")
            } catch {
                fuzzFailure("re-encoded datagram \(datagram.hex) fails to decode: \(error)")
            }
        }

        if mode & 1 != 0 {
            // An empty datagram's frame holds only its CRC, which the decoder drops as too short
            // (no datagram the session makes is empty: each starts with its kind byte).
            let deliverable = planned.filter { !$0.isEmpty && $0.count <= maximumDatagramSize }
            fuzzCheck(whole.datagrams.suffix(deliverable.count) == deliverable[...], "encoded datagrams did not all come back")
            let empty = planned.filter(\.isEmpty).count
            fuzzCheck(whole.drops[.tooShort, default: 0] >= empty, "\(empty) empty datagrams, not all dropped as too short")
            fuzzCheck(whole.buffered == 0, "bytes left buffered after whole frames")
        }
    }

    static func decode(_ pieces: [ArraySlice<UInt8>], maximumDatagramSize: Int) -> Outcome {
        var decoder = LineFrameDecoder(maximumDatagramSize: maximumDatagramSize)
        var outcome = Outcome()
        for piece in pieces {
            let datagrams = decoder.append(piece)
            fuzzCheck(decoder.bufferedByteCount <= decoder.maximumEncodedFrameLength,
                      "\(decoder.bufferedByteCount) bytes buffered, frame limit \(decoder.maximumEncodedFrameLength)")
            for datagram in datagrams {
                fuzzCheck(datagram.count <= maximumDatagramSize, "a \(datagram.count)-byte datagram passed")
            }
            outcome.datagrams += datagrams
        }
        outcome.framesDecoded = decoder.framesDecoded
        for reason in LineFrameError.allCases where decoder.dropped(reason) > 0 {
            outcome.drops[reason] = decoder.dropped(reason)
        }
        fuzzCheck(decoder.framesDropped == outcome.drops.values.reduce(0, +), "framesDropped disagrees with the reasons")
        fuzzCheck(decoder.framesDecoded == outcome.datagrams.count, "framesDecoded is off")
        if let last = decoder.lastError { fuzzCheck(decoder.dropped(last) > 0, "lastError \(last) was never counted") }
        outcome.buffered = decoder.bufferedByteCount
        return outcome
    }

    /// The stream read segment by segment, without the decoder's incremental state.
    static func reference(_ stream: [UInt8], maximumDatagramSize: Int) -> Outcome {
        let limit = LineFraming.maximumEncodedSize(forDatagramLength: maximumDatagramSize) - 1
        var outcome = Outcome()
        let segments = stream.split(separator: LineFraming.delimiter, omittingEmptySubsequences: false)
        for (index, segment) in segments.enumerated() {
            let terminated = index < segments.count - 1
            if segment.count > limit {
                outcome.drops[.oversized, default: 0] += 1
                continue
            }
            guard terminated else {
                outcome.buffered = segment.count
                continue
            }
            guard !segment.isEmpty else { continue }
            do {
                let datagram = try LineFraming.decodeFrame(segment)
                guard datagram.count <= maximumDatagramSize else {
                    outcome.drops[.oversized, default: 0] += 1
                    continue
                }
                outcome.datagrams.append(datagram)
                outcome.framesDecoded += 1
            } catch {
                outcome.drops[error, default: 0] += 1
            }
        }
        return outcome
    }
}
