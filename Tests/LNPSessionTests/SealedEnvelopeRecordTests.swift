import LNPCrypto
import LNPSession
import LNPWire
import Testing

/// The message-layer record inside an envelope: round trips, bounds, and strict decoding of
/// arbitrary bytes (the vector file holds one case per decoding error).
@Suite struct SealedEnvelopeRecordTests {
    @Test func messagesRoundTrip() throws {
        for _ in 0..<200 {
            let created = UInt64.random(in: 0...UInt64.max / 2)
            let message = try EnvelopeMessage(
                id: SecureRandom.bytes(16), created: created, expiry: created + UInt64.random(in: 0...1 << 40),
                type: UInt16.random(in: 0...UInt16.max), body: SecureRandom.bytes(Int.random(in: 0...600)))
            let record = EnvelopeRecord.message(message)
            #expect(try EnvelopeRecord.decode(record.encode()) == record)
        }
        // Zero times encode as empty tu64 values and come back.
        let zero = EnvelopeRecord.message(try EnvelopeMessage(id: [UInt8](repeating: 0, count: 16), created: 0, expiry: 0, type: 0, body: []))
        #expect(try EnvelopeRecord.decode(zero.encode()) == zero)
    }

    @Test func receiptsRoundTripUpToTheirBound() throws {
        for count in [1, 2, 100, EnvelopeReceipt.maximumIDs] {
            let record = EnvelopeRecord.receipt(try EnvelopeReceipt(delivered: (0..<count).map { _ in SecureRandom.bytes(16) }))
            #expect(try EnvelopeRecord.decode(record.encode()) == record)
        }
        #expect(throws: EnvelopeRecordError.tooManyMessageIDs(count: 1025, limit: 1024)) {
            try EnvelopeReceipt(delivered: Array(repeating: [UInt8](repeating: 1, count: 16), count: 1025))
        }
        #expect(throws: EnvelopeRecordError.noMessageIDs) { try EnvelopeReceipt(delivered: []) }
        #expect(throws: EnvelopeRecordError.badFieldLength(field: "delivered", expected: 16, actual: 15)) {
            try EnvelopeReceipt(delivered: [[UInt8](repeating: 1, count: 15)])
        }
    }

    /// The optional odd fields: a message's sequence number and a receipt's cumulative mark.
    @Test func sequenceFieldsRoundTripAndAreOptional() throws {
        let id = SecureRandom.bytes(16)
        for seq: UInt64 in [1, 255, 256, 1 << 40, UInt64(Int64.max)] {
            let message = EnvelopeRecord.message(try EnvelopeMessage(id: id, created: 5, expiry: 9, type: 3, body: [1, 2], seq: seq))
            #expect(try EnvelopeRecord.decode(message.encode()) == message)
            let receipt = EnvelopeRecord.receipt(try EnvelopeReceipt(delivered: [], throughSeq: seq))
            #expect(try EnvelopeRecord.decode(receipt.encode()) == receipt)
            let both = EnvelopeRecord.receipt(try EnvelopeReceipt(delivered: [id], throughSeq: seq))
            #expect(try EnvelopeRecord.decode(both.encode()) == both)
        }
        // Without the fields the bytes are exactly those of a record that predates them.
        let plain = try EnvelopeMessage(id: id, created: 5, expiry: 9, type: 3, body: [1, 2])
        #expect(plain.seq == nil)
        let sequenced = try EnvelopeMessage(id: id, created: 5, expiry: 9, type: 3, body: [1, 2], seq: 7)
        // seq is TLV type 1, a one-byte tu64: 3 bytes more, right after the 18-byte id field.
        #expect(EnvelopeRecord.message(sequenced).encode() == Array(EnvelopeRecord.message(plain).encode()[0..<20]) + [1, 1, 7]
                + Array(EnvelopeRecord.message(plain).encode()[20...]))
        // A receipt with only a mark leaves the id list out.
        #expect(EnvelopeRecord.receipt(try EnvelopeReceipt(delivered: [], throughSeq: 300)).encode() == [1, 2, 1, 2, 1, 0x2c])
        // Zero and values past Int64 are refused, built or decoded.
        #expect(throws: EnvelopeRecordError.sequenceOutOfRange(field: "seq", 0)) {
            try EnvelopeMessage(id: id, created: 5, expiry: 9, type: 3, body: [], seq: 0)
        }
        #expect(throws: EnvelopeRecordError.sequenceOutOfRange(field: "through_seq", UInt64(Int64.max) + 1)) {
            try EnvelopeReceipt(delivered: [], throughSeq: UInt64(Int64.max) + 1)
        }
        #expect(throws: EnvelopeRecordError.sequenceOutOfRange(field: "through_seq", 0)) {
            try EnvelopeRecord.decode([1, 2, 1, 0])
        }
        // A receipt with neither ids nor a mark still lacks its field; one with an empty id list
        // and no mark still acknowledges nothing.
        #expect(throws: EnvelopeRecordError.missingField("delivered")) { try EnvelopeRecord.decode([1, 2]) }
        #expect(throws: EnvelopeRecordError.noMessageIDs) { try EnvelopeRecord.decode([1, 2, 0, 0]) }
        #expect(EnvelopeRecordError.sequenceOutOfRange(field: "seq", 0).specCode == "RECORD_SEQUENCE_OUT_OF_RANGE")
    }

    @Test func messagesAreCheckedWhenBuilt() throws {
        #expect(throws: EnvelopeRecordError.badFieldLength(field: "message_id", expected: 16, actual: 17)) {
            try EnvelopeMessage(id: [UInt8](repeating: 1, count: 17), created: 0, expiry: 0, type: 1, body: [])
        }
        #expect(throws: EnvelopeRecordError.expiryBeforeCreation(created: 10, expiry: 9)) {
            try EnvelopeMessage(id: [UInt8](repeating: 1, count: 16), created: 10, expiry: 9, type: 1, body: [])
        }
        let message = try EnvelopeMessage(id: [UInt8](repeating: 1, count: 16), created: 10, expiry: 20, type: 1, body: [])
        #expect(!message.hasExpired(at: 20))
        #expect(message.hasExpired(at: 21))
    }

    /// Random bytes and random edits of good records never trap: each is a record or a typed error.
    @Test func arbitraryBytesDecodeOrFailCleanly() throws {
        let good = EnvelopeRecord.message(try EnvelopeMessage(
            id: SecureRandom.bytes(16), created: 1_764_000_000, expiry: 1_764_086_400, type: 7, body: SecureRandom.bytes(40))).encode()
        var decoded = 0
        for round in 0..<5000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = [1, UInt8.random(in: 1...2)] + SecureRandom.bytes(Int.random(in: 0...80))
            } else {
                bytes = good
                for _ in 0..<Int.random(in: 1...4) {
                    bytes[Int.random(in: 0..<bytes.count)] = UInt8.random(in: 0...255)
                }
            }
            do throws(EnvelopeRecordError) {
                _ = try EnvelopeRecord.decode(bytes)
                decoded += 1
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        // Edits inside the body leave a valid record, so some must decode.
        #expect(decoded > 0)
    }

    @Test func recordsTravelInEnvelopes() throws {
        let sender = PrivateKey.generate(), recipient = PrivateKey.generate()
        let message = EnvelopeRecord.message(try EnvelopeMessage(
            id: SecureRandom.bytes(16), created: 1, expiry: 2, type: 0x8001, body: Array("hi".utf8)))
        let envelope = try SealedEnvelope.seal(payload: message.encode(), to: recipient.publicKey, from: sender)
        let opened = try SealedEnvelope.open(envelope, with: recipient)
        #expect(try EnvelopeRecord.decode(opened.payload) == message)
        #expect(opened.sender == sender.publicKey)
    }
}
