import Foundation
import LNPCrypto
import LNPSession
import Testing

/// The sealed-envelope vectors (Fixtures/sealed-envelope.json), checked both ways: sealing
/// with the fixed keys gives the recorded bytes and key schedule, opening the recorded
/// bytes gives the payload, the sender and the same schedule, and every failure case fails
/// with its recorded error. Scripts/check-sealed-envelope-vectors.py checks the same file
/// with an independent implementation (Python: coincurve, cryptography).
@Suite struct SealedEnvelopeVectorTests {
    let vectors: [String: Any]

    init() throws { vectors = try Fixture.json("sealed-envelope") }

    private func key(_ name: String) throws -> PrivateKey {
        let keys = try vectors.object("keys")
        let key = try PrivateKey(keys.bytes(name + "_priv"))
        #expect(key.publicKey.compressed == (try keys.bytes(name + "_pub")), "\(name)_pub")
        return key
    }

    @Test func formatConstants() throws {
        #expect(try vectors.string("protocol_name") == String(decoding: SealedEnvelope.protocolName, as: UTF8.self))
        #expect(try vectors.bytes("prologue_label") == SealedEnvelope.prologueLabel)
        #expect(vectors["overhead"] as? Int == SealedEnvelope.overhead)
        #expect(SealedEnvelope.overhead == 103)
    }

    @Test func sealingGivesTheRecordedEnvelopes() throws {
        let sender = try key("sender"), recipient = try key("recipient"), ephemeral = try key("ephemeral")
        let cases = try vectors.objects("envelopes")
        #expect(cases.count >= 5)
        for v in cases {
            let name = try v.string("name")
            let payload = try v.byteSpec("payload")
            let (envelope, schedule) = try SealedEnvelope.sealRevealingKeySchedule(
                payload: payload, to: recipient.publicKey, from: sender, ephemeral: ephemeral)
            try v.expectEnvelope(envelope, name)
            #expect(try v.object("key_schedule").matches(schedule), "\(name)")
            // The public entry point gives the same bytes.
            #expect(try SealedEnvelope.seal(payload: payload, to: recipient.publicKey, from: sender, ephemeral: ephemeral) == envelope)
        }
    }

    @Test func openingGivesTheRecordedPayloads() throws {
        let sender = try key("sender"), recipient = try key("recipient")
        for v in try vectors.objects("envelopes") {
            let name = try v.string("name")
            let envelope: [UInt8]
            if v["envelope"] != nil {
                envelope = try v.bytes("envelope")
            } else {
                // Large envelopes are recorded by hash; the bytes come from sealing, which the
                // test above holds to that hash.
                envelope = try SealedEnvelope.seal(payload: v.byteSpec("payload"), to: recipient.publicKey,
                                                   from: sender, ephemeral: key("ephemeral"))
                try v.expectEnvelope(envelope, name)
            }
            let (opened, schedule) = try SealedEnvelope.openRevealingKeySchedule(envelope, with: recipient)
            #expect(opened.sender == sender.publicKey, "\(name)")
            #expect(opened.payload == (try v.byteSpec("payload")), "\(name)")
            #expect(try v.object("key_schedule").matches(schedule), "\(name)")
            if let record = v["record"] as? [String: Any] {
                #expect(try EnvelopeRecord.decode(opened.payload) == record.envelopeRecord(), "\(name)")
                #expect(try record.envelopeRecord().encode() == opened.payload, "\(name)")
            }
        }
    }

    @Test func openFailures() throws {
        let holders = ["recipient": try key("recipient"), "other": try key("other")]
        let cases = try vectors.objects("open_failures")
        #expect(cases.count >= 15)
        var seen = Set<String>()
        for v in cases {
            let name = try v.string("name")
            let expected = try v.string("expected_error")
            seen.insert(expected)
            guard let holder = holders[try v.string("open_with")] else { throw Fixture.FixtureError.malformed(name) }
            let limit = v["maximum_length"] as? Int ?? SealedEnvelope.maximumLength
            let envelope = try v.byteSpec("envelope")
            do throws(SealedEnvelopeError) {
                _ = try SealedEnvelope.open(envelope, with: holder, maximumLength: limit)
                Issue.record("\(name): opened, expected \(expected)")
            } catch {
                #expect(error.specCode == expected, "\(name): \(error)")
            }
        }
        // Every failure a malformed envelope can cause has a vector (a key service failure cannot).
        #expect(seen == ["TOO_LARGE", "TRUNCATED", "TRAILING_BYTES", "UNKNOWN_VERSION", "BAD_EPHEMERAL_KEY",
                         "NOT_FOR_THIS_NODE", "BAD_SENDER_KEY", "BAD_PAYLOAD_TAG"])
    }

    @Test func recordFailures() throws {
        let cases = try vectors.objects("record_failures")
        for v in cases {
            let name = try v.string("name")
            let expected = try v.string("expected_error")
            let record = try v.byteSpec("record")
            do throws(EnvelopeRecordError) {
                _ = try EnvelopeRecord.decode(record)
                Issue.record("\(name): decoded, expected \(expected)")
            } catch {
                #expect(error.specCode == expected, "\(name): \(error)")
            }
        }
    }

    @Test func recordsAcceptedWithUnknownOddFields() throws {
        for v in try vectors.objects("record_accepts") {
            let name = try v.string("name")
            #expect(try EnvelopeRecord.decode(v.byteSpec("record")) == v.object("decoded").envelopeRecord(), "\(name)")
        }
    }

    /// Writes the vector file. Runs only with LNP_WRITE_ENVELOPE_VECTORS=1 in the environment,
    /// after a deliberate format change; the other tests then check the new file.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["LNP_WRITE_ENVELOPE_VECTORS"] == "1"))
    func writeVectors() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/sealed-envelope.json")
        let data = try JSONSerialization.data(withJSONObject: try SealedEnvelopeVectorGenerator.vectors(),
                                              options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try (data + Data("\n".utf8)).write(to: file)
    }
}

extension Dictionary where Key == String, Value == Any {
    /// Bytes given as hex, or as `{"prefix": hex, "repeat_byte": hex, "repeat_count": n}`
    /// so that large inputs stay small in the file.
    func byteSpec(_ key: String) throws -> [UInt8] {
        if self[key] is String { return try bytes(key) }
        let spec = try object(key)
        let prefix = spec["prefix"] == nil ? [] : try spec.bytes("prefix")
        guard let byte = Hex.decode(try spec.string("repeat_byte")), byte.count == 1,
              let count = spec["repeat_count"] as? Int else { throw Fixture.FixtureError.malformed(key) }
        return prefix + [UInt8](repeating: byte[0], count: count)
    }

    fileprivate func expectEnvelope(_ envelope: [UInt8], _ name: String) throws {
        if self["envelope"] != nil {
            #expect(Hex.encode(envelope) == (try string("envelope")), "\(name)")
        } else {
            #expect(envelope.count == self["envelope_length"] as? Int, "\(name)")
            #expect(Hex.encode(Hashing.sha256(envelope)) == (try string("envelope_sha256")), "\(name)")
        }
    }

    fileprivate func matches(_ schedule: SealedEnvelope.KeySchedule) throws -> Bool {
        try bytes("initial_hash") == schedule.initialHash
            && bytes("hash_after_prologue") == schedule.hashAfterPrologue
            && bytes("hash_after_recipient") == schedule.hashAfterRecipient
            && bytes("hash_after_ephemeral") == schedule.hashAfterEphemeral
            && bytes("es") == schedule.ephemeralStaticSecret
            && bytes("ck_after_es") == schedule.chainingKeyAfterEphemeralStatic
            && bytes("sender_key_key") == schedule.senderKeyKey
            && bytes("hash_after_sender") == schedule.hashAfterSender
            && bytes("ss") == schedule.staticStaticSecret
            && bytes("ck_after_ss") == schedule.chainingKeyAfterStaticStatic
            && bytes("payload_key") == schedule.payloadKey
    }

    fileprivate func envelopeRecord() throws -> EnvelopeRecord {
        switch try string("kind") {
        case "message":
            guard let created = self["created"] as? Int, let expiry = self["expiry"] as? Int,
                  let type = self["type"] as? Int else { throw Fixture.FixtureError.malformed("message") }
            return .message(try EnvelopeMessage(id: bytes("message_id"), created: UInt64(created), expiry: UInt64(expiry),
                                                type: UInt16(type), body: byteSpec("body"), seq: (self["seq"] as? Int).map(UInt64.init)))
        case "receipt":
            guard let ids = self["delivered"] as? [String] else { throw Fixture.FixtureError.malformed("receipt") }
            return .receipt(try EnvelopeReceipt(delivered: ids.compactMap { Hex.decode($0) },
                                                throughSeq: (self["through_seq"] as? Int).map(UInt64.init)))
        default:
            throw Fixture.FixtureError.malformed("kind")
        }
    }
}

struct SealedEnvelopeVectorError: Error { let field: String }

/// Builds the vector file from fixed keys. Successes come from the implementation and are
/// independently confirmed by Scripts/check-sealed-envelope-vectors.py; failures are
/// hand-made edits of a good envelope or record, each aimed at one check.
enum SealedEnvelopeVectorGenerator {
    static let keys: [(String, UInt8)] = [("sender", 0x11), ("recipient", 0x21), ("ephemeral", 0x12), ("other", 0x31)]

    static func vectors() throws -> [String: Any] {
        var keyObject: [String: String] = [:]
        var privateKeys: [String: PrivateKey] = [:]
        for (name, byte) in keys {
            let key = try PrivateKey([UInt8](repeating: byte, count: 32))
            privateKeys[name] = key
            keyObject[name + "_priv"] = Hex.encode(key.secret.exportBytes())
            keyObject[name + "_pub"] = key.publicKey.hex
        }
        let sender = privateKeys["sender"]!, recipient = privateKeys["recipient"]!, ephemeral = privateKeys["ephemeral"]!

        let messageID = Array(0..<16).map { UInt8($0) }
        let message = EnvelopeRecord.message(try EnvelopeMessage(
            id: messageID, created: 1_764_000_000, expiry: 1_764_086_400, type: 0x8001, body: Array("hello over the spool".utf8)))
        let receipt = EnvelopeRecord.receipt(try EnvelopeReceipt(delivered: [messageID, [UInt8](repeating: 0xee, count: 16)]))
        let messageObject: [String: Any] = [
            "kind": "message", "message_id": Hex.encode(messageID), "created": 1_764_000_000, "expiry": 1_764_086_400,
            "type": 0x8001, "body": Hex.encode(Array("hello over the spool".utf8)),
        ]
        let receiptObject: [String: Any] = [
            "kind": "receipt", "delivered": [Hex.encode(messageID), String(repeating: "ee", count: 16)],
        ]

        let payloads: [(name: String, payload: Any, record: [String: Any]?)] = [
            ("empty payload", "", nil),
            ("100-byte payload 00..63", Hex.encode((0..<100).map { UInt8($0) }), nil),
            ("65 KiB payload of 0x5a", ["repeat_byte": "5a", "repeat_count": 65 * 1024], nil),
            ("message record", Hex.encode(message.encode()), messageObject),
            ("receipt record", Hex.encode(receipt.encode()), receiptObject),
        ]
        var envelopes: [[String: Any]] = []
        var hundred: (envelope: [UInt8], schedule: SealedEnvelope.KeySchedule)?
        for entry in payloads {
            var object: [String: Any] = ["name": entry.name, "payload": entry.payload]
            let payload = try object.byteSpec("payload")
            let sealed = try SealedEnvelope.sealRevealingKeySchedule(payload: payload, to: recipient.publicKey, from: sender, ephemeral: ephemeral)
            if payload.count == 100 { hundred = sealed }
            if sealed.envelope.count > 4096 {
                object["envelope_length"] = sealed.envelope.count
                object["envelope_sha256"] = Hex.encode(Hashing.sha256(sealed.envelope))
            } else {
                object["envelope"] = Hex.encode(sealed.envelope)
            }
            object["key_schedule"] = scheduleObject(sealed.schedule)
            if let record = entry.record { object["record"] = record }
            envelopes.append(object)
        }
        guard let (good, schedule) = hundred else { throw SealedEnvelopeVectorError(field: "100-byte payload") }
        let sequenceAccepts = try Self.sequenceAccepts(messageID, messageObject)

        return [
            "format": "LNP sealed envelope version 1, see Sources/LNPSession/SEALED-ENVELOPE.md",
            "notes": [
                "Hex is lowercase. A byte spec is hex or {prefix, repeat_byte, repeat_count}.",
                "Every envelope is sealed by sender to recipient with the fixed ephemeral key; production never reuses one.",
                "key_schedule lists h, ck, ECDH results and keys after each Noise step; the payload's final MixHash is not computed.",
                "open_with names the key that opens a failure case; maximum_length, when present, is the reader's limit.",
                "Failure cases edit the 100-byte envelope unless their name says otherwise.",
            ],
            "protocol_name": String(decoding: SealedEnvelope.protocolName, as: UTF8.self),
            "prologue_label": Hex.encode(SealedEnvelope.prologueLabel),
            "overhead": SealedEnvelope.overhead,
            "keys": keyObject,
            "envelopes": envelopes,
            "open_failures": try openFailures(good, schedule),
            "record_failures": recordFailures(message.encode()),
            "record_accepts": [[
                "name": "message with an unknown odd field 9 after the body",
                "record": Hex.encode(message.encode() + [9, 2, 0xab, 0xcd]),
                "decoded": messageObject,
            ]] + sequenceAccepts,
        ]
    }

    static func scheduleObject(_ schedule: SealedEnvelope.KeySchedule) -> [String: String] {
        [
            "initial_hash": Hex.encode(schedule.initialHash),
            "hash_after_prologue": Hex.encode(schedule.hashAfterPrologue),
            "hash_after_recipient": Hex.encode(schedule.hashAfterRecipient),
            "hash_after_ephemeral": Hex.encode(schedule.hashAfterEphemeral),
            "es": Hex.encode(schedule.ephemeralStaticSecret),
            "ck_after_es": Hex.encode(schedule.chainingKeyAfterEphemeralStatic),
            "sender_key_key": Hex.encode(schedule.senderKeyKey),
            "hash_after_sender": Hex.encode(schedule.hashAfterSender),
            "ss": Hex.encode(schedule.staticStaticSecret),
            "ck_after_ss": Hex.encode(schedule.chainingKeyAfterStaticStatic),
            "payload_key": Hex.encode(schedule.payloadKey),
        ]
    }

    static func openFailures(_ good: [UInt8], _ schedule: SealedEnvelope.KeySchedule) throws -> [[String: Any]] {
        func flipped(_ offset: Int, _ bit: Int) -> [UInt8] {
            var copy = good
            copy[offset] ^= 1 << bit
            return copy
        }
        func failure(_ name: String, _ bytes: [UInt8], _ code: String, with holder: String = "recipient") -> [String: Any] {
            ["name": name, "envelope": Hex.encode(bytes), "expected_error": code, "open_with": holder]
        }
        let notOnCurve = [0x02] + [UInt8](repeating: 0xff, count: 32)  // x >= p: no such point
        let ephemeral = SealedEnvelope.headerLength, sender = ephemeral + 33, payload = sender + 49
        // A sender key that authenticates but does not parse: only a deliberately malformed
        // sealer can make one, so it is encrypted here with the schedule's own key and h.
        let badSender = try ChaCha20Poly1305.seal(key: schedule.senderKeyKey, nonce: 0,
                                                  associatedData: schedule.hashAfterEphemeral, plaintext: notOnCurve)
        var act = [UInt8](repeating: 0, count: 50)  // BOLT-8 act one's shape: version 0, key, tag
        act[1] = 2
        var declaredHuge = Array(good[0..<SealedEnvelope.headerLength])
        declaredHuge[1...4] = [0x00, 0xff, 0xff, 0xff]
        return [
            failure("version bit 0 flipped (version 0)", flipped(0, 0), "UNKNOWN_VERSION"),
            failure("version 2", [2] + good.dropFirst(), "UNKNOWN_VERSION"),
            failure("a BOLT-8 act one shape (version 0, 50 bytes)", act, "UNKNOWN_VERSION"),
            failure("length bit 0 flipped (declares 101 bytes)", flipped(4, 0), "TRUNCATED"),
            failure("length bit 2 flipped (declares 96 bytes)", flipped(4, 2), "TRAILING_BYTES"),
            failure("length top bit flipped (declares 2 GiB)", flipped(1, 7), "TOO_LARGE"),
            failure("header declares a 16 MiB payload, 5 bytes given", declaredHuge, "TOO_LARGE"),
            ["name": "reader limit one byte below the envelope", "envelope": Hex.encode(good),
             "expected_error": "TOO_LARGE", "open_with": "recipient", "maximum_length": good.count - 1],
            failure("empty", [], "TRUNCATED"),
            failure("version byte only", [1], "TRUNCATED"),
            failure("header only", Array(good.prefix(SealedEnvelope.headerLength)), "TRUNCATED"),
            failure("last byte missing", Array(good.dropLast()), "TRUNCATED"),
            failure("one byte appended", good + [0], "TRAILING_BYTES"),
            failure("ephemeral prefix 02/03 swapped (the negated point)", flipped(ephemeral, 0), "NOT_FOR_THIS_NODE"),
            failure("ephemeral prefix bit 2 flipped (not 02 or 03)", flipped(ephemeral, 2), "BAD_EPHEMERAL_KEY"),
            failure("ephemeral key not on the curve",
                    Array(good[..<ephemeral]) + notOnCurve + Array(good[sender...]), "BAD_EPHEMERAL_KEY"),
            failure("encrypted sender key bit flipped", flipped(sender + 5, 3), "NOT_FOR_THIS_NODE"),
            failure("sender key tag bit flipped", flipped(payload - 1, 7), "NOT_FOR_THIS_NODE"),
            failure("sealed to recipient, opened by another node", good, "NOT_FOR_THIS_NODE", with: "other"),
            failure("sender key authenticates but is not on the curve",
                    Array(good[..<sender]) + badSender + Array(good[payload...]), "BAD_SENDER_KEY"),
            failure("payload ciphertext bit flipped", flipped(payload + 50, 0), "BAD_PAYLOAD_TAG"),
            failure("payload tag bit flipped", flipped(good.count - 1, 6), "BAD_PAYLOAD_TAG"),
        ]
    }

    /// The optional sequence fields (`seq` in a message, `through_seq` in a receipt).
    static func sequenceAccepts(_ messageID: [UInt8], _ messageObject: [String: Any]) throws -> [[String: Any]] {
        let sequenced = EnvelopeRecord.message(try EnvelopeMessage(
            id: messageID, created: 1_764_000_000, expiry: 1_764_086_400, type: 0x8001, body: Array("hello over the spool".utf8), seq: 300))
        var sequencedObject = messageObject
        sequencedObject["seq"] = 300
        let markOnly = EnvelopeRecord.receipt(try EnvelopeReceipt(delivered: [], throughSeq: 10_000))
        let both = EnvelopeRecord.receipt(try EnvelopeReceipt(delivered: [messageID], throughSeq: 1))
        return [
            ["name": "message with seq 300", "record": Hex.encode(sequenced.encode()), "decoded": sequencedObject],
            ["name": "receipt with through_seq 10000 and no ids", "record": Hex.encode(markOnly.encode()),
             "decoded": ["kind": "receipt", "delivered": [String](), "through_seq": 10_000] as [String: Any]],
            ["name": "receipt with one id and through_seq 1", "record": Hex.encode(both.encode()),
             "decoded": ["kind": "receipt", "delivered": [Hex.encode(messageID)], "through_seq": 1] as [String: Any]],
        ]
    }

    static func recordFailures(_ message: [UInt8]) -> [[String: Any]] {
        func failure(_ name: String, _ bytes: [UInt8], _ code: String) -> [String: Any] {
            ["name": name, "record": Hex.encode(bytes), "expected_error": code]
        }
        let id = [UInt8](repeating: 7, count: 16)
        let created: [UInt8] = [2, 4, 0x69, 0x24, 0x81, 0x00]
        let type: [UInt8] = [6, 2, 0x80, 0x01]
        let body: [UInt8] = [8, 0]
        func messageRecord(_ fields: [UInt8]...) -> [UInt8] { [1, 1] + fields.joined() }
        return [
            failure("empty", [], "RECORD_MALFORMED"),
            failure("kind missing", [1], "RECORD_MALFORMED"),
            failure("version 2", [2] + message.dropFirst(), "RECORD_UNKNOWN_VERSION"),
            failure("kind 3", [1, 3], "RECORD_UNKNOWN_KIND"),
            failure("message without body", messageRecord([0, 16] + id, created, [4, 4, 0x69, 0x25, 0xd2, 0x80], type),
                    "RECORD_MISSING_FIELD"),
            failure("message id of 15 bytes",
                    messageRecord([0, 15] + id.dropLast(), created, [4, 4, 0x69, 0x25, 0xd2, 0x80], type, body),
                    "RECORD_BAD_FIELD_LENGTH"),
            failure("type of 1 byte", messageRecord([0, 16] + id, created, [4, 4, 0x69, 0x25, 0xd2, 0x80], [6, 1, 1], body),
                    "RECORD_BAD_FIELD_LENGTH"),
            failure("created with a leading zero byte",
                    messageRecord([0, 16] + id, [2, 5, 0, 0x69, 0x24, 0x81, 0x00], [4, 4, 0x69, 0x25, 0xd2, 0x80], type, body),
                    "RECORD_MALFORMED"),
            failure("expiry before created", messageRecord([0, 16] + id, created, [4, 1, 1], type, body),
                    "RECORD_EXPIRY_BEFORE_CREATION"),
            failure("unknown even field 10", message + [10, 0], "RECORD_MALFORMED"),
            failure("fields out of order", messageRecord([0, 16] + id, [4, 4, 0x69, 0x25, 0xd2, 0x80], created, type, body),
                    "RECORD_MALFORMED"),
            failure("field length past the end", message + [11, 5, 1], "RECORD_MALFORMED"),
            failure("receipt with no ids", [1, 2, 0, 0], "RECORD_NO_MESSAGE_IDS"),
            failure("receipt without its field", [1, 2], "RECORD_MISSING_FIELD"),
            failure("receipt of 17 bytes of ids", [1, 2, 0, 17] + [UInt8](repeating: 1, count: 17), "RECORD_PARTIAL_MESSAGE_ID"),
            failure("message with seq 0", messageRecord([0, 16] + id, [1, 0], created, [4, 4, 0x69, 0x25, 0xd2, 0x80], type, body),
                    "RECORD_SEQUENCE_OUT_OF_RANGE"),
            failure("message with seq 2^63", messageRecord([0, 16] + id, [1, 8, 0x80, 0, 0, 0, 0, 0, 0, 0], created,
                                                           [4, 4, 0x69, 0x25, 0xd2, 0x80], type, body), "RECORD_SEQUENCE_OUT_OF_RANGE"),
            failure("receipt with through_seq 0", [1, 2, 1, 0], "RECORD_SEQUENCE_OUT_OF_RANGE"),
            failure("receipt with an empty id list and no through_seq", [1, 2, 0, 0, 3, 0], "RECORD_NO_MESSAGE_IDS"),
            ["name": "receipt of 1025 ids", "expected_error": "RECORD_TOO_MANY_MESSAGE_IDS",
             "record": ["prefix": "010200fd4010", "repeat_byte": "01", "repeat_count": 1025 * 16]],
        ]
    }
}
