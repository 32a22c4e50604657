import LNPCrypto
import LNPRPC
import LNPWire
import Testing

@Suite struct PayloadTests {
    let key = PrivateKey.generate().publicKey

    @Test func everyPayloadRoundTrips() throws {
        let info = NodeInfo(nodeID: key, listen: ["0.0.0.0:9735", "[::]:9735"], version: "0.1.0", peerCount: 3, onion: nil)
        #expect(try NodeInfo.decode(info.encoded()) == info)
        let tor = TorStatus(state: .bootstrapping, mode: "launched", bootstrapProgress: 45, summary: "Loading relay descriptors",
                            socks: "127.0.0.1:9050", onion: String(repeating: "a", count: 56) + ".onion:9735", onionReachable: true, torOnly: true)
        let onionInfo = NodeInfo(nodeID: key, listen: ["127.0.0.1:9735"], version: "0.1.0", peerCount: 0, onion: tor.onion, tor: tor)
        #expect(try NodeInfo.decode(onionInfo.encoded()) == onionInfo)
        var badProgress = tor
        badProgress.bootstrapProgress = 101
        #expect(throws: WireError.self) { try TorStatus.decode(badProgress.encoded()) }
        var badState = tor.encoded()
        badState[0] = 9
        #expect(throws: WireError.self) { try TorStatus.decode(badState) }
        let peer = PeerRecord(nodeID: key, address: "127.0.0.1:9735", connected: true, inbound: false, persistent: true, largeFrames: true, features: [0x02, 0x00])
        #expect(try PeerList.decode(PeerList(peers: [peer, peer]).encoded()) == PeerList(peers: [peer, peer]))
        let send = SendRequest(recipient: key, messages: [TypedMessage(type: 32769, payload: Array("hi".utf8)), TypedMessage(type: 32771, payload: [])])
        #expect(try SendRequest.decode(send.encoded()) == send)
        let ids = MessageIDs(ids: [SecureRandom.bytes(16), SecureRandom.bytes(16)])
        #expect(try MessageIDs.decode(ids.encoded()) == ids)
        let recv = RecvRequest(afterRowID: 7, from: key, limit: 100, waitMilliseconds: 2_000)
        #expect(try RecvRequest.decode(recv.encoded()) == recv)
        let record = IncomingRecord(rowID: 1, id: SecureRandom.bytes(16), from: key, type: 32769, payload: [1, 2, 3], receivedAtMicros: 1_700_000_000_000_000)
        #expect(try IncomingList.decode(IncomingList(messages: [record]).encoded()) == IncomingList(messages: [record]))
        let status = StatusReply(id: SecureRandom.bytes(16), recipient: key, state: "delivered", link: "tcp", createdAtMicros: 5)
        #expect(try StatusReply.decode(status.encoded()) == status)
        let peerSend = PeerSendRequest(nodeID: key, messages: [[0x80, 0x01, 9], []])
        #expect(try PeerSendRequest.decode(peerSend.encoded()) == peerSend)
        #expect(try PingRequest.decode(PingRequest(nodeID: key, pongBytes: 10).encoded()) == PingRequest(nodeID: key, pongBytes: 10))
        #expect(try PeerDisconnectedEvent.decode(PeerDisconnectedEvent(nodeID: key, reason: "bye").encoded()).reason == "bye")
        #expect(try StringList.decode(StringList(["127.0.0.1:9735", "[::1]:9735", ""]).encoded()) == StringList(["127.0.0.1:9735", "[::1]:9735", ""]))
        var lyingList = WireWriter()
        lyingList.writeU32(1_000_000)
        #expect(throws: WireError.self) { try StringList.decode(lyingList.bytes) }
    }

    @Test func malformedPayloadsAreTypedErrorsNotTraps() {
        let send = SendRequest(recipient: key, messages: [TypedMessage(type: 1, payload: [UInt8](repeating: 7, count: 40))]).encoded()
        for cut in 0..<send.count {
            #expect(throws: WireError.self) { try SendRequest.decode(Array(send.prefix(cut))) }
        }
        #expect(throws: WireError.self) { try SendRequest.decode(send + [0]) }
        // A count that promises more elements than bytes remain is refused before allocating.
        var lying = WireWriter()
        lying.writeNodeID(key)
        lying.writeU32(UInt32.max)
        #expect(throws: WireError.self) { try SendRequest.decode(lying.bytes) }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let bytes = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? NodeInfo.decode(bytes)
            _ = try? IncomingList.decode(bytes)
            _ = try? PeerSendRequest.decode(bytes)
            _ = try? RecvRequest.decode(bytes)
        }
    }

    /// Records reuse the previous record's sender key when its bytes repeat; a different
    /// sender is parsed (and checked) again.
    @Test func incomingListWithSeveralSenders() throws {
        let other = PrivateKey.generate().publicKey
        let records = [key, key, other, key, other, other].enumerated().map { index, sender in
            IncomingRecord(rowID: UInt64(index + 1), id: SecureRandom.bytes(16), from: sender, type: 32769,
                           payload: [UInt8(index)], receivedAtMicros: 1)
        }
        #expect(try IncomingList.decode(IncomingList(messages: records).encoded()) == IncomingList(messages: records))
        // The second record's sender: one byte changed makes it a different (invalid) point.
        var bytes = IncomingList(messages: Array(records.prefix(2))).encoded()
        let recordSize = 8 + 16 + 33 + 2 + 4 + 1 + 8
        let secondSender = 4 + recordSize + 8 + 16
        bytes[secondSender] = 0x05
        #expect(throws: WireError.self) { try IncomingList.decode(bytes) }
    }

    /// msgd builds `recv` replies from borrowed row bytes; the result must be the list's
    /// own encoding, byte for byte, empty lists and empty payloads included.
    @Test func incomingListBuilderEncodesAsTheList() throws {
        let other = PrivateKey.generate().publicKey
        let records = [key, other, other].enumerated().map { index, sender in
            IncomingRecord(rowID: UInt64(index + 7), id: SecureRandom.bytes(16), from: sender, type: UInt16(32769 + index),
                           payload: SecureRandom.bytes(index * 300), receivedAtMicros: 1_700_000_000_123_000 + UInt64(index))
        }
        for prefix in 0...records.count {
            var builder = IncomingListBuilder()
            for record in records.prefix(prefix) {
                record.id.withUnsafeBytes { id in
                    record.payload.withUnsafeBytes { payload in
                        builder.append(rowID: record.rowID, id: id, from: record.from, type: record.type, payload: payload,
                                       receivedAtMicros: record.receivedAtMicros)
                    }
                }
            }
            #expect(builder.count == prefix)
            #expect(builder.finish() == IncomingList(messages: Array(records.prefix(prefix))).encoded())
        }
    }

    @Test func peerMessagesDecodeInPlaceAsTheyDecodeCopied() throws {
        let event = PeerMessagesEvent(nodeID: key, messages: [[0x80, 0xE9, 1, 2, 3], [], [0x80, 0x01] + SecureRandom.bytes(300)])
        let bytes = event.encoded()
        let inPlace = try PeerMessagesEvent.decodeInPlace(bytes)
        #expect(inPlace.nodeID == key)
        #expect(inPlace.messages.map { reader in
            var reader = reader
            return reader.readRemainingBytes()
        } == event.messages)
        for cut in 0..<bytes.count {
            #expect(throws: WireError.self) { try PeerMessagesEvent.decodeInPlace(Array(bytes.prefix(cut))) }
        }
    }

    @Test func envelopeWrittenIntoAWriterMatchesItsWireMessage() {
        let envelope = Envelope(seq: 7, id: SecureRandom.bytes(16), type: 32771, payload: SecureRandom.bytes(100))
        var writer = WireWriter(capacity: 4)
        writer.writeU32(9)
        Envelope.write(seq: envelope.seq, id: envelope.id, type: envelope.type, payload: envelope.payload, into: &writer)
        #expect(Array(writer.bytes.dropFirst(4)) == envelope.wireMessage())
        #expect(Envelope.wireSize(payloadCount: 100) == envelope.wireMessage().count)
    }

    @Test func envelopeAndAckRoundTrip() throws {
        let envelope = Envelope(seq: 42, id: SecureRandom.bytes(16), type: 32769, payload: Array("hello".utf8))
        let wire = envelope.wireMessage()
        #expect(Array(wire.prefix(2)) == [0x80, 0xE9])
        var reader = WireReader(Array(wire.dropFirst(2)))
        #expect(try Envelope(payload: &reader) == envelope)
        let ack = Ack(throughSeq: 1_000).wireMessage()
        var ackReader = WireReader(Array(ack.dropFirst(2)))
        #expect(try Ack(payload: &ackReader) == Ack(throughSeq: 1_000))
        // Both are odd types, so a Lightning peer that does not know them ignores them.
        #expect(MessagingWire.envelopeType % 2 == 1 && MessagingWire.ackType % 2 == 1)
        var truncated = WireReader(Array(wire.dropFirst(2).dropLast()))
        #expect(throws: WireError.self) { try Envelope(payload: &truncated) }
    }
}
