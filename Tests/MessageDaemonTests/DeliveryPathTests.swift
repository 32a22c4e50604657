import Foundation
import LNPCrypto
import LNPRPC
import LNPStore
import LNPWire
import Testing
@testable import MessageDaemon

@Suite struct DeliveryPathTests {
    let peer = PrivateKey.generate().publicKey

    func messages(_ seqs: ClosedRange<UInt64>, size: Int = 10) -> [StoredOutgoing] {
        seqs.map { seq in
            StoredOutgoing(id: SecureRandom.bytes(16), recipient: peer, seq: seq, type: 32769, payload: [UInt8](repeating: UInt8(seq & 0xff), count: size),
                           createdAt: Date(), expiresAt: nil, state: .queued, link: nil)
        }
    }

    @Test func aLinkWithoutAcknowledgementsGoesBackToTheLastAcknowledgedMessage() {
        var link = MessageEngine.Link(reliable: true, address: "udp://peer")
        let start = ContinuousClock.now
        link.handedOver(through: 100, count: 100, bytes: 1_000)
        link.handedOver(through: 200, count: 100, bytes: 1_000)
        link.acknowledge(through: 100)
        #expect(link.acknowledgedThrough == 100 && link.unacknowledgedCount == 100)
        // Not yet: the timeout has not passed since the last progress.
        let early = link.retransmitIfDue(now: link.lastProgress + .seconds(1))
        #expect(!early)
        let due = link.lastProgress + MessageEngine.minimumRetransmitTimeout
        let retransmitted = link.retransmitIfDue(now: due)
        #expect(retransmitted)
        #expect(link.sentThroughSeq == 100 && link.unacknowledgedCount == 0 && link.unacknowledgedBytes == 0)
        #expect(!link.windowIsFull)
        // Backoff while acknowledgements stay away; the minimum again after progress.
        #expect(link.retransmitTimeout == MessageEngine.minimumRetransmitTimeout * 2)
        link.handedOver(through: 150, count: 50, bytes: 500)
        let tooSoon = link.retransmitIfDue(now: due + MessageEngine.minimumRetransmitTimeout)
        #expect(!tooSoon)
        link.acknowledge(through: 150)
        #expect(link.retransmitTimeout == MessageEngine.minimumRetransmitTimeout)
        let idle = link.retransmitIfDue(now: start + .seconds(3_600))
        #expect(!idle, "nothing unacknowledged, nothing to send again")
        // A plain Lightning peer has no acknowledgements to wait for.
        var plain = MessageEngine.Link(reliable: false, address: "127.0.0.1:9735")
        plain.handedOver(through: 10, count: 10, bytes: 100)
        let plainRetransmitted = plain.retransmitIfDue(now: start + .seconds(3_600))
        #expect(!plainRetransmitted)
    }

    @Test func theOutboxHoldsOneRunWithoutGaps() {
        var outbox = Outbox()
        let first = outbox.append(messages(5...7)), second = outbox.append(messages(8...9))
        #expect(first && second)
        // A batch that does not follow the last one is refused whole.
        let gap = outbox.append(messages(11...12))
        #expect(!gap)
        #expect(outbox.batch(after: 4, limit: 100, bytes: 1 << 20).map(\.seq) == Array(5...9))
        // Only what starts right after the given seq is offered.
        #expect(outbox.batch(after: 3, limit: 100, bytes: 1 << 20).isEmpty)
        #expect(outbox.batch(after: 5, limit: 100, bytes: 1 << 20).isEmpty)
        let dropped = outbox.drop(through: 6)
        #expect(dropped.count == 2 && dropped.bytes == 20)
        #expect(outbox.batch(after: 6, limit: 2, bytes: 1 << 20).map(\.seq) == [7, 8])
        let rest = outbox.drop(through: 9)
        #expect(rest.count == 3)
        #expect(outbox.isEmpty)
        // Once empty, any run may start it again.
        let restart = outbox.append(messages(20...21))
        #expect(restart)
        #expect(outbox.batch(after: 19, limit: 10, bytes: 1 << 20).map(\.seq) == [20, 21])
    }

    @Test func anOutboxBatchStaysWithinItsBytesButNeverEmpty() {
        var outbox = Outbox()
        let appended = outbox.append(messages(1...4, size: 1_000))
        #expect(appended)
        #expect(outbox.batch(after: 0, limit: 10, bytes: 2_500).map(\.seq) == [1, 2])
        // A single message larger than the budget still goes, alone.
        #expect(outbox.batch(after: 0, limit: 10, bytes: 10).map(\.seq) == [1])
    }

    @Test func requestsGroupPerRecipientWithinBounds() {
        let other = PrivateKey.generate().publicKey
        func request(_ to: PublicKey, count: Int, size: Int = 1) -> SendRequest {
            SendRequest(recipient: to, messages: [TypedMessage](repeating: TypedMessage(type: 1, payload: [UInt8](repeating: 0, count: size)), count: count))
        }
        let requests = [request(peer, count: 2), request(peer, count: 3), request(other, count: 1), request(peer, count: 1)]
        #expect(SendWriter.groupEnd(of: requests, from: 0) == 2)
        #expect(SendWriter.groupEnd(of: requests, from: 2) == 3)
        #expect(SendWriter.groupEnd(of: requests, from: 3) == 4)
        let full = [request(peer, count: MessageStore.maxBatchCount), request(peer, count: 1)]
        #expect(SendWriter.groupEnd(of: full, from: 0) == 1)
        let big = [request(peer, count: 1, size: SendWriter.groupBytes), request(peer, count: 1, size: 1)]
        #expect(SendWriter.groupEnd(of: big, from: 0) == 1)
    }

    /// msgd writes peerd's request in one pass; it must be byte for byte what encoding
    /// each message on its own and then the request would give.
    @Test func thePeerRequestMatchesTheRequestEncodedMessageByMessage() throws {
        let batch = messages(1...3) + messages(4...4, size: 0)
        let reliable = MessageEngine.sendPayload(to: peer, batch, reliable: true)
        let envelopes = batch.map { Envelope(seq: $0.seq, id: $0.id, type: $0.type, payload: $0.payload).wireMessage() }
        #expect(reliable == PeerSendRequest(nodeID: peer, messages: envelopes).encoded())
        let plain = MessageEngine.sendPayload(to: peer, batch, reliable: false)
        let typed = batch.map { [UInt8($0.type >> 8), UInt8($0.type & 0xff)] + $0.payload }
        #expect(plain == PeerSendRequest(nodeID: peer, messages: typed).encoded())
        #expect(try PeerSendRequest.decode(reliable).messages == envelopes)
    }
}
