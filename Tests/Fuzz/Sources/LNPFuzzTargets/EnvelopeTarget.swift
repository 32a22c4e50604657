import LNPCrypto
import LNPSession

/// `envelope`: `SealedEnvelope.open` and `EnvelopeRecord.decode` (envelopes arrive in
/// spool bundles and on one-way links, from anyone). Keys are fixed (the BOLT-8 vector's
/// static and ephemeral keys). Layout: `[mode][rest]`:
/// - mode 0: the rest is an envelope, opened by the recipient and by another node;
/// - mode 1: the rest is a list of mutations `[u16 position][xor]` (a position of
///   0xFFFF appends the xor byte, 0xFFFE cuts the last byte) applied to a genuine
///   envelope (sealed once, from the sender to the recipient, around a message record),
///   which is then opened;
/// - mode 2: the rest is an envelope record, decoded; a record that decodes is sealed
///   around and opened again.
///
/// Properties checked:
/// - errors are the typed case of the first failing check, in the format's order: size
///   limit, version, header length, declared length (`truncated`, `trailingBytes`),
///   ephemeral key (compressed, on the curve); after that only `notForThisNode`,
///   `badSenderKey` or `badPayloadTag`, never `keyAgreementFailed` with a local key;
/// - an envelope that opens is the genuine one (nothing else carries valid tags for these
///   keys), with the genuine sender and payload; another node cannot open it;
/// - a mutated genuine envelope either is byte-identical to it or does not open;
/// - records: decode→encode→decode gives the same record and encoding is stable; every
///   error has a code and a sentence; seal→open gives back the record and its sender,
///   with `envelopeLength` equal to the envelope's size.
public enum EnvelopeTarget {
    static let recipient = Bolt8Vector.responderStatic
    static let sender = Bolt8Vector.initiatorStatic
    static let otherNode = Bolt8Vector.responderEphemeral
    static let ephemeral = Bolt8Vector.initiatorEphemeral

    static let genuinePayload: [UInt8] = fixture {
        guard let message = try? EnvelopeMessage(id: Array(0..<16), created: 1_800_000_000, expiry: 1_800_086_400,
                                                  type: 32_769, body: Array("hello through the spool".utf8))
        else { fatalError("fixed envelope message refused") }
        return EnvelopeRecord.message(message).encode()
    }

    static let genuine: [UInt8] = fixture {
        guard let envelope = try? SealedEnvelope.seal(payload: genuinePayload, to: recipient.publicKey, from: sender,
                                                      ephemeral: ephemeral)
        else { fatalError("cannot seal the fixed envelope") }
        return envelope
    }

    public static func prepare() { _ = (recipient, sender, otherNode, genuine) }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        switch input.byte() % 3 {
        case 0:
            let envelope = input.rest()
            open(envelope)
        case 1:
            var envelope = genuine
            while input.remaining >= 3 {
                let position = Int(input.u16())
                let xor = input.byte()
                switch position {
                case 0xFFFF: envelope.append(xor)
                case 0xFFFE: if !envelope.isEmpty { envelope.removeLast() }
                default: if !envelope.isEmpty { envelope[position % envelope.count] ^= xor }
                }
            }
            open(envelope)
        default:
            record(input.rest())
        }
    }

    /// The error of the first check that fails before any cryptography, or nil.
    static func expectedEarlyError(_ envelope: [UInt8]) -> SealedEnvelopeError? {
        let limit = SealedEnvelope.maximumLength
        if envelope.count > limit { return .tooLarge(length: envelope.count, limit: limit) }
        guard let version = envelope.first else { return .truncated(expected: SealedEnvelope.headerLength, received: 0) }
        if version != SealedEnvelope.version { return .unknownVersion(version) }
        if envelope.count < SealedEnvelope.headerLength {
            return .truncated(expected: SealedEnvelope.headerLength, received: envelope.count)
        }
        let declared = envelope[1...4].reduce(0) { $0 << 8 | Int($1) }
        let total = SealedEnvelope.overhead + declared
        if total > limit { return .tooLarge(length: total, limit: limit) }
        if envelope.count < total { return .truncated(expected: total, received: envelope.count) }
        if envelope.count > total { return .trailingBytes(expected: total, received: envelope.count) }
        let ephemeral = Array(envelope[5..<38])
        if ephemeral[0] != 2 && ephemeral[0] != 3 || (try? PublicKey(ephemeral)) == nil { return .badEphemeralKey }
        return nil
    }

    static func open(_ envelope: [UInt8]) {
        let early = expectedEarlyError(envelope)
        do {
            let length = try SealedEnvelope.envelopeLength(header: envelope.prefix(SealedEnvelope.headerLength))
            fuzzCheck(early == nil || length != envelope.count || early == .badEphemeralKey,
                      "envelopeLength accepts a header that open must refuse (\(String(describing: early)))")
        } catch {
            fuzzCheck(early == error || (early == .tooLarge(length: envelope.count, limit: SealedEnvelope.maximumLength)),
                      "envelopeLength failed with \(error), open expected to fail with \(String(describing: early))")
        }
        do {
            let opened = try SealedEnvelope.open(envelope, with: recipient)
            fuzzCheck(early == nil, "opened despite \(String(describing: early))")
            fuzzCheck(envelope == genuine, "an envelope other than the genuine one opened: \(envelope.hex)")
            fuzzCheck(opened.sender == sender.publicKey && opened.payload == genuinePayload, "the genuine envelope opened changed")
            do {
                _ = try SealedEnvelope.open(envelope, with: otherNode)
                fuzzFailure("another node opened the envelope")
            } catch {
                fuzzCheck(error == .notForThisNode, "another node's open failed with \(error)")
            }
        } catch {
            checkDescribed(error)
            if let early {
                fuzzCheck(error == early, "open failed with \(error), expected \(early)")
            } else {
                switch error {
                case .notForThisNode, .badSenderKey, .badPayloadTag: break
                default: fuzzFailure("open failed with \(error) after the clear checks passed")
                }
            }
        }
    }

    static func record(_ bytes: [UInt8]) {
        let decoded: EnvelopeRecord
        do {
            decoded = try EnvelopeRecord.decode(bytes)
        } catch {
            fuzzCheck(!error.specCode.isEmpty && !error.description.isEmpty, "record error without code or sentence")
            return
        }
        let encoded = decoded.encode()
        do {
            let again = try EnvelopeRecord.decode(encoded)
            fuzzCheck(again == decoded, "decode→encode→decode changed the record")
            fuzzCheck(again.encode() == encoded, "encoding is not stable")
        } catch {
            fuzzFailure("a decoded record re-encodes to bytes that fail: \(error)")
        }
        switch decoded {
        case let .message(message):
            fuzzCheck(message.id.count == EnvelopeMessage.idLength && message.expiry >= message.created, "invalid message")
            fuzzCheck(message.seq.map { (1...UInt64(Int64.max)).contains($0) } ?? true, "a message with sequence number 0 or above 2^63-1")
        case let .receipt(receipt):
            // A receipt lists ids, or says "everything through N", or both.
            fuzzCheck((!receipt.delivered.isEmpty || receipt.throughSeq != nil) && receipt.delivered.count <= EnvelopeReceipt.maximumIDs,
                      "invalid receipt")
            fuzzCheck(receipt.throughSeq.map { (1...UInt64(Int64.max)).contains($0) } ?? true, "a receipt through 0 or above 2^63-1")
        }
        do {
            let envelope = try SealedEnvelope.seal(payload: encoded, to: recipient.publicKey, from: sender, ephemeral: ephemeral)
            fuzzCheck(try SealedEnvelope.envelopeLength(header: envelope) == envelope.count, "envelopeLength is off")
            let opened = try SealedEnvelope.open(envelope, with: recipient)
            fuzzCheck(opened.sender == sender.publicKey && opened.payload == encoded, "seal→open changed the record")
            fuzzCheck(try EnvelopeRecord.decode(opened.payload) == decoded, "the opened record decodes differently")
        } catch {
            fuzzFailure("sealing and opening a valid record failed: \(error)")
        }
    }

    static func checkDescribed(_ error: SealedEnvelopeError) {
        fuzzCheck(!error.specCode.isEmpty && !error.description.isEmpty, "envelope error without code or sentence")
    }
}
