import LNPCrypto
import LNPSession
import LNPTransportSpool

/// `spool`: `SpoolBundle.parse` and `SpoolBundle.header` (bundle files carried by hand or
/// by a file-sharing link, so anyone may have written them). Layout: `[mode][rest]`.
/// - mode even: the rest is a bundle file; `parse` runs with the format's limit and with
///   a limit taken from the file's last byte (`count - byte`), so both limit paths run;
/// - mode odd: the rest is `[id byte][damage: u16 position, u8 xor][cut u16][planned
///   payloads]`: envelopes with valid clear headers around the payloads are encoded into
///   a bundle, which must parse back; then one byte is changed (xor non-zero) or the file
///   is cut (cut < length), which must be refused.
///
/// Properties checked:
/// - a bundle that parses: its header agrees (`header` gives the same id and count), the
///   envelope ranges tile the space between header and checksum exactly, each range's
///   clear header gives its length, and `encode` of the same id and envelopes gives back
///   the very bytes;
/// - errors come in the documented order: over the limit is `tooLarge` before anything is
///   read; a header problem is the error `header` itself gives; `notABundle` exactly when
///   the magic is missing;
/// - encode→parse round trip; any changed byte or cut is refused (SHA-256), with
///   `truncated`, `envelopesCutShort` or a header error rather than success.
public enum SpoolTarget {
    public static func prepare() {}

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        if input.byte() & 1 == 0 {
            let bytes = input.rest()
            check(bytes, limit: SpoolBundle.maximumLength)
            check(bytes, limit: bytes.count - Int(bytes.last ?? 0))
        } else {
            roundTrip(&input)
        }
    }

    @discardableResult
    static func check(_ bytes: [UInt8], limit: Int) -> SpoolBundle.Parsed? {
        let headerOutcome = Result { () throws(SpoolBundleError) in try SpoolBundle.header(bytes[...]) }
        switch headerOutcome {
        case .success:
            fuzzCheck(Array(bytes.prefix(8)) == SpoolBundle.magic, "header accepted without the magic")
        case let .failure(error):
            fuzzCheck((error == .notABundle) == (Array(bytes.prefix(8)) != SpoolBundle.magic), "notABundle \(error) disagrees with the magic")
            fuzzCheck(!error.description.isEmpty, "empty error description")
        }
        let parsed: SpoolBundle.Parsed
        do {
            parsed = try SpoolBundle.parse(bytes, maximumLength: limit)
        } catch {
            fuzzCheck(!error.description.isEmpty, "empty error description")
            if bytes.count > min(limit, SpoolBundle.maximumLength) {
                fuzzCheck(error == .tooLarge(length: bytes.count, limit: min(limit, SpoolBundle.maximumLength)),
                          "an over-limit file failed with \(error)")
            } else if case let .failure(headerError) = headerOutcome {
                fuzzCheck(error == headerError, "parse failed with \(error), header with \(headerError)")
            }
            return nil
        }
        fuzzCheck(bytes.count <= limit, "a \(bytes.count)-byte file passed a \(limit)-byte limit")
        guard case let .success(header) = headerOutcome else { fuzzFailure("parse accepted what header refuses") }
        fuzzCheck(header.id == parsed.id && header.envelopeCount == parsed.envelopeRanges.count, "header and parse disagree")
        var position = SpoolBundle.headerLength
        for range in parsed.envelopeRanges {
            fuzzCheck(range.lowerBound == position, "envelope ranges leave a gap or overlap")
            do {
                let length = try SealedEnvelope.envelopeLength(header: bytes[range])
                fuzzCheck(length == range.count, "range of \(range.count) bytes for a \(length)-byte envelope")
            } catch {
                fuzzFailure("an accepted envelope's header fails: \(error)")
            }
            position = range.upperBound
        }
        fuzzCheck(position == bytes.count - SpoolBundle.checksumLength, "envelopes do not reach the checksum")
        let envelopes = parsed.envelopeRanges.map { Array(bytes[$0]) }
        fuzzCheck(SpoolBundle.encode(id: parsed.id, envelopes: envelopes) == bytes, "re-encoding gives other bytes")
        fuzzCheck(SpoolBundle.encodedLength(envelopeBytes: envelopes.reduce(0) { $0 + $1.count }) == bytes.count, "encodedLength")
        return parsed
    }

    static func roundTrip(_ input: inout FuzzInput) {
        guard let id = try? SpoolBundleID([UInt8](repeating: input.byte(), count: SpoolBundleID.length)) else {
            fuzzFailure("a 16-byte bundle id was refused")
        }
        let position = Int(input.u16())
        let xor = input.byte()
        let cut = Int(input.u16())
        let envelopes = planMessages(&input, maximumMessages: 16, byteBudget: 32_768).map { message -> [UInt8] in
            // A clear header (version, payload length) and the rest of an envelope's size.
            let length = UInt32(message.bytes.count)
            return [SealedEnvelope.version, UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16),
                    UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
                + [UInt8](repeating: message.control, count: SealedEnvelope.overhead - SealedEnvelope.headerLength) + message.bytes
        }
        let bytes = SpoolBundle.encode(id: id, envelopes: envelopes)
        do {
            let parsed = try SpoolBundle.parse(bytes)
            fuzzCheck(parsed.id == id, "bundle id changed")
            fuzzCheck(parsed.envelopeRanges.map { Array(bytes[$0]) } == envelopes, "envelopes changed")
        } catch {
            fuzzCheck(envelopes.isEmpty && error == .noEnvelopes, "an encoded bundle failed: \(error)")
            return
        }
        check(bytes, limit: SpoolBundle.maximumLength)

        if xor != 0 {
            var damaged = bytes
            damaged[position % damaged.count] ^= xor
            fuzzCheck(check(damaged, limit: SpoolBundle.maximumLength) == nil, "a damaged bundle parsed")
        }
        if cut < bytes.count {
            let short = Array(bytes[..<cut])
            fuzzCheck(check(short, limit: SpoolBundle.maximumLength) == nil, "a bundle cut to \(cut) bytes parsed")
            if cut >= SpoolBundle.headerLength {
                do {
                    _ = try SpoolBundle.parse(short)
                } catch {
                    switch error {
                    case .truncated, .envelopesCutShort, .checksumMismatch, .badEnvelopeHeader: break
                    default: fuzzFailure("a cut bundle failed with \(error)")
                    }
                }
            }
        }
    }
}
