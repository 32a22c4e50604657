import Foundation
import LNPBus
import LNPCrypto
import LNPRPC
import LNPStore
import LNPWire
import Logging

/// msgd: the message layer. A message accepted by `send` is in SQLite before the reply;
/// it is delivered over whatever link reaches the peer, retried after reconnects, and the
/// receiver stores each message exactly once (see `MessagingWire`).
///
/// Everything that changes state runs on the `MessageEngine` actor; bus callbacks only
/// enqueue into it. peerd's events arrive in order from one publisher, and the actor
/// handles them in that order through one mailbox.
public final class MessageService: Sendable {
    private let server: BusServer
    private let subscriber: BusSubscriber
    private let engine: MessageEngine
    private let mailbox: AsyncStream<MessageEngine.Input>.Continuation
    private let consumer: Task<Void, Never>

    public init(context: BusContext, layout: BusLayout, store: MessageStore, peerClient: BusClient, logger: Logger) throws(BusError) {
        let engine = MessageEngine(store: store, peers: peerClient, logger: logger)
        self.engine = engine
        let (stream, continuation) = AsyncStream<MessageEngine.Input>.makeStream()
        mailbox = continuation
        consumer = Task {
            for await input in stream { await engine.handle(input) }
        }
        server = try BusServer(context: context, layout: layout, name: .msgd) { message, responder in
            continuation.yield(.request(message, responder))
        }
        let inbound = InboundQueue()
        subscriber = try BusSubscriber(context: context, layout: layout, services: [.peerd], methods: nil) { _, event in
            // Inbound messages skip the mailbox queue: they gather in `inbound` while the
            // engine is busy (typically waiting for an fsync), and the engine then stores
            // everything gathered in one transaction per peer: group commit, so the batch
            // grows with the disk's latency instead of paying one fsync per event.
            if event.method == PeerEventType.messages.rawValue {
                if inbound.append(event.payload) { continuation.yield(.inboundReady(inbound)) }
            } else {
                continuation.yield(.peerEvent(event))
            }
        }
        Task { await engine.setPublisher { [server] event in server.publish(event) } }
    }

    public func start() throws(BusError) {
        try server.start()
        let continuation = mailbox
        // Expiry and re-delivery checks: cheap queries, once a second.
        Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                continuation.yield(.tick)
            }
        }
    }

    public func close() {
        mailbox.finish()
        consumer.cancel()
        subscriber.close()
        server.close()
    }
}

actor MessageEngine {
    enum Input: Sendable {
        case request(BusMessage, BusResponder)
        case peerEvent(BusMessage)
        case inboundReady(InboundQueue)
        case tick
        case deliver(PublicKey)
    }

    /// What msgd knows of a connected peer.
    struct Link {
        /// Speaks `lnp_message`/`lnp_ack`; otherwise messages go out as plain Lightning messages.
        var reliable: Bool
        var address: String
        /// Highest sequence number handed to peerd on this connection.
        var sentThroughSeq: UInt64 = 0
        var delivering = false
        var blocked = false
        /// Messages per batch, adapted to their size so a batch stays near `batchBytes`:
        /// a thousand 1 MiB messages must never be read into memory at once.
        var batchLimit = 16
    }

    struct RecvWaiter {
        let request: RecvRequest
        let responder: BusResponder
        let deadline: ContinuousClock.Instant
    }

    static let batchBytes = 4 << 20
    static let maximumBatchCount = 5_000
    private let store: MessageStore
    private let peers: BusClient
    private let logger: Logger
    private var links: [PublicKey: Link] = [:]
    private var waiters: [RecvWaiter] = []
    private var publish: @Sendable (BusMessage) -> Void = { _ in }

    init(store: MessageStore, peers: BusClient, logger: Logger) {
        self.store = store
        self.peers = peers
        self.logger = logger
    }

    func setPublisher(_ publish: @escaping @Sendable (BusMessage) -> Void) { self.publish = publish }

    func handle(_ input: Input) async {
        switch input {
        case let .request(message, responder): handleRequest(message, responder)
        case let .peerEvent(event): handlePeerEvent(event)
        case let .inboundReady(queue): receiveGathered(queue.takeAll())
        case .tick: tick()
        case let .deliver(peer): await deliver(to: peer)
        }
    }

    // MARK: requests

    private func handleRequest(_ message: BusMessage, _ responder: BusResponder) {
        do throws(WireError) {
            switch MessageMethod(rawValue: message.method) {
            case .send:
                let request = try SendRequest.decode(message.payload)
                guard !request.messages.isEmpty else { return responder.reply(MessageIDs(ids: []).encoded()) }
                do {
                    let stored = try store.enqueue(to: request.recipient, messages: request.messages.map { ($0.type, $0.payload) })
                    responder.reply(MessageIDs(ids: stored.map(\.id)).encoded())
                } catch {
                    logger.error("msgd: cannot store messages for \(request.recipient): \(error)")
                    return responder.fail(code: RPCErrorCode.storage.rawValue, message: "the node could not store the messages: \(error)")
                }
                startDelivery(to: request.recipient)
            case .recv:
                let request = try RecvRequest.decode(message.payload)
                let found = incoming(for: request)
                if !found.isEmpty || request.waitMilliseconds == 0 {
                    responder.reply(IncomingList(messages: found).encoded())
                } else {
                    waiters.append(RecvWaiter(request: request, responder: responder,
                                              deadline: .now + .milliseconds(Int64(request.waitMilliseconds))))
                    scheduleWaiterTimeout(after: .milliseconds(Int64(request.waitMilliseconds)))
                }
            case .status:
                let request = try StatusRequest.decode(message.payload)
                guard let message = try? store.status(of: request.id) else {
                    return responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "no message with id \(Hex.encode(request.id)) was sent from this node")
                }
                responder.reply(StatusReply(id: message.id, recipient: message.recipient, state: message.state.description,
                                            link: message.link, createdAtMicros: UInt64(message.createdAt.timeIntervalSince1970 * 1_000_000)).encoded())
            case nil:
                responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "msgd has no method \(message.method)")
            }
        } catch {
            logger.warning("msgd: malformed request \(message.method): \(error)")
            responder.fail(code: RPCErrorCode.invalidRequest.rawValue, message: "malformed request: \(error)")
        }
    }

    /// A reply carries at most this many payload bytes (and at least one message), well
    /// under the bus's 64 MiB message limit.
    static let recvReplyBytes = 32 << 20

    private func incoming(for request: RecvRequest) -> [IncomingRecord] {
        let limit = Int(min(request.limit == 0 ? 10_000 : request.limit, 10_000))
        var records: [IncomingRecord] = []
        var bytes = 0
        var after = Int64(clamping: request.afterRowID)
        // Read in small pages so large messages never pile up past the byte cap.
        while records.count < limit {
            let pageSize = min(256, limit - records.count)
            let page = (try? store.incoming(afterRowID: after, from: request.from, limit: pageSize)) ?? []
            for row in page {
                if !records.isEmpty && bytes + row.payload.count > Self.recvReplyBytes { return records }
                bytes += row.payload.count
                records.append(IncomingRecord(rowID: UInt64(row.rowID), id: row.id, from: row.sender, type: row.type, payload: row.payload,
                                              receivedAtMicros: UInt64(row.receivedAt.timeIntervalSince1970 * 1_000_000)))
            }
            guard page.count == pageSize, let last = page.last else { break }
            after = last.rowID
        }
        return records
    }

    private func scheduleWaiterTimeout(after delay: Duration) {
        Task { [weak self] in
            try? await Task.sleep(for: delay)
            await self?.answerWaiters(onlyExpired: true)
        }
    }

    /// Answers waiting `recv`s that now have messages, and those whose time is up.
    private func answerWaiters(onlyExpired: Bool) {
        let now = ContinuousClock.now
        waiters.removeAll { waiter in
            if !onlyExpired {
                let found = incoming(for: waiter.request)
                if !found.isEmpty {
                    waiter.responder.reply(IncomingList(messages: found).encoded())
                    return true
                }
            }
            if waiter.deadline <= now {
                waiter.responder.reply(IncomingList(messages: []).encoded())
                return true
            }
            return false
        }
    }

    // MARK: peer events

    private func handlePeerEvent(_ event: BusMessage) {
        do throws(WireError) {
            switch PeerEventType(rawValue: event.method) {
            case .connected:
                let peer = try PeerRecord.decode(event.payload)
                let reliable = FeatureVector(bytes: peer.features).supports(.lnpMessaging)
                links[peer.nodeID] = Link(reliable: reliable, address: peer.address)
                if reliable, let through = try? store.highestContiguousSeq(from: peer.nodeID), through > 0 {
                    // Tell a sender that restarted what we already hold, so it resends only the rest.
                    sendToPeer(peer.nodeID, [Ack(throughSeq: through).wireMessage()])
                }
                startDelivery(to: peer.nodeID)
            case .disconnected:
                let nodeID = try PeerDisconnectedEvent.decode(event.payload).nodeID
                links[nodeID] = nil
            case .writable:
                let nodeID = try NodeIDRequest.decode(event.payload).nodeID
                links[nodeID]?.blocked = false
                startDelivery(to: nodeID)
            case .messages:
                receiveGathered([event.payload])
            case nil:
                break
            }
        } catch {
            logger.warning("msgd: malformed event \(event.method) from peerd: \(error)")
        }
    }

    /// Stores everything gathered since the last round, one transaction per peer, in
    /// arrival order.
    private func receiveGathered(_ events: [[UInt8]]) {
        var order: [PublicKey] = []
        var byPeer: [PublicKey: [[UInt8]]] = [:]
        for payload in events {
            do {
                let batch = try PeerMessagesEvent.decode(payload)
                if byPeer[batch.nodeID] == nil { order.append(batch.nodeID) }
                byPeer[batch.nodeID, default: []] += batch.messages
            } catch {
                logger.warning("msgd: malformed messages event from peerd: \(error)")
            }
        }
        for peer in order { receive(byPeer[peer] ?? [], from: peer) }
    }

    private func receive(_ messages: [[UInt8]], from sender: PublicKey) {
        var toStore: [(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])] = []
        toStore.reserveCapacity(messages.count)
        var sawEnvelope = false
        for message in messages {
            guard message.count >= 2 else { continue }
            let type = UInt16(message[0]) << 8 | UInt16(message[1])
            var reader = WireReader(message[2...])
            switch type {
            case MessagingWire.envelopeType:
                do {
                    let envelope = try Envelope(payload: &reader)
                    toStore.append((envelope.id, envelope.seq, envelope.type, envelope.payload))
                    sawEnvelope = true
                } catch {
                    logger.warning("msgd: dropped a malformed lnp_message from \(sender): \(error)")
                }
            case MessagingWire.ackType:
                do {
                    let ack = try Ack(payload: &reader)
                    try store.markDelivered(to: sender, throughSeq: ack.throughSeq)
                    publish(BusMessage(method: MessageEventType.delivered.rawValue, payload: ack.wireMessage()))
                } catch {
                    logger.warning("msgd: bad lnp_ack from \(sender): \(error)")
                }
            case MessageType.warning, MessageType.error:
                logger.notice("msgd: \(sender) sent \(MessageType.name(of: type)): \(String(decoding: message.dropFirst(36), as: UTF8.self))")
            default:
                // A plain Lightning custom message from any peer: stored as received.
                toStore.append((SecureRandom.bytes(16), nil, type, Array(message.dropFirst(2))))
            }
        }
        guard !toStore.isEmpty else { return }
        do {
            let result = try store.storeIncoming(from: sender, messages: toStore, receivedAt: Date())
            if result.duplicates > 0 { logger.debug("msgd: \(result.duplicates) duplicate messages from \(sender) dropped") }
            if sawEnvelope {
                let through = try store.highestContiguousSeq(from: sender)
                sendToPeer(sender, [Ack(throughSeq: through).wireMessage()])
            }
            if !result.stored.isEmpty {
                publish(BusMessage(method: MessageEventType.received.rawValue, payload: NodeIDRequest(nodeID: sender).encoded()))
                answerWaiters(onlyExpired: false)
            }
        } catch {
            // Not acknowledged, so the sender will send these again.
            logger.error("msgd: cannot store messages from \(sender): \(error)")
        }
    }

    private func sendToPeer(_ peer: PublicKey, _ messages: [[UInt8]]) {
        let request = BusMessage(method: PeerMethod.send.rawValue, payload: PeerSendRequest(nodeID: peer, messages: messages).encoded())
        let peers = self.peers
        Task { _ = try? await peers.request(request, timeout: .seconds(10)) }
    }

    // MARK: delivery

    private func startDelivery(to peer: PublicKey) {
        guard var link = links[peer], !link.delivering, !link.blocked else { return }
        link.delivering = true
        links[peer] = link
        Task { await self.deliver(to: peer) }
    }

    /// Hands undelivered messages to peerd in batches while the peer is connected and
    /// its queue has room.
    private func deliver(to peer: PublicKey) async {
        var handedOver: (reliable: Bool, through: UInt64)?
        defer {
            links[peer]?.delivering = false
            // Recorded once per run of batches, not per batch: "sent" is informational for
            // LNP peers (their acks mark delivery), and a plain peer's messages count as
            // delivered once written, the most we can know.
            if let handedOver {
                do {
                    try store.markSent(to: peer, throughSeq: handedOver.through, link: "tcp")
                    if !handedOver.reliable { try store.markDelivered(to: peer, throughSeq: handedOver.through) }
                } catch {
                    logger.error("msgd: cannot record delivery progress for \(peer): \(error)")
                }
            }
        }
        while let link = links[peer], !link.blocked {
            let batch: [StoredOutgoing]
            do {
                batch = try store.undelivered(to: peer, afterSeq: link.sentThroughSeq, limit: link.batchLimit)
            } catch {
                logger.error("msgd: cannot read the queue for \(peer): \(error)")
                return
            }
            guard let last = batch.last else { return }
            let averageSize = max(64, batch.reduce(0) { $0 + $1.payload.count } / batch.count)
            links[peer]?.batchLimit = max(1, min(Self.maximumBatchCount, Self.batchBytes / averageSize))
            let wire = batch.map { message in
                link.reliable
                    ? Envelope(seq: message.seq, id: message.id, type: message.type, payload: message.payload).wireMessage()
                    : [UInt8(message.type >> 8), UInt8(message.type & 0xff)] + message.payload
            }
            let request = BusMessage(method: PeerMethod.send.rawValue, payload: PeerSendRequest(nodeID: peer, messages: wire).encoded())
            let reply: [UInt8]
            do {
                reply = try await peers.request(request, timeout: .seconds(30))
            } catch {
                logger.notice("msgd: delivery to \(peer) paused: \(error)")
                return
            }
            guard links[peer] != nil else { return }
            if reply.first == PeerSendOutcome.queueFull.rawValue {
                links[peer]?.blocked = true
                return
            }
            links[peer]?.sentThroughSeq = last.seq
            handedOver = (link.reliable, last.seq)
        }
    }

    private func tick() {
        _ = try? store.expire(now: Date())
        answerWaiters(onlyExpired: true)
        for (peer, link) in links where !link.delivering && !link.blocked { startDelivery(to: peer) }
    }
}

/// Inbound message events gathered between two engine rounds (see `MessageService.init`).
final class InboundQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [[UInt8]] = []
    private var signaled = false

    /// Adds an event; true when the engine must be told (the first since it last took).
    func append(_ payload: [UInt8]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        events.append(payload)
        if signaled { return false }
        signaled = true
        return true
    }

    func takeAll() -> [[UInt8]] {
        lock.lock()
        defer { lock.unlock() }
        let taken = events
        events = []
        signaled = false
        return taken
    }
}
