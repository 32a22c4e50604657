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
    private let peerClient: BusClient
    private let mailbox: AsyncStream<MessageEngine.Input>.Continuation
    private let consumer: Task<Void, Never>
    private let spool: SpoolLink?

    /// `spool`, when given, answers `spoolExport`/`spoolImport` (see `SpoolLink`).
    public init(context: BusContext, layout: BusLayout, store: MessageStore, peerClient: BusClient, spool: SpoolLink? = nil,
                logger: Logger) throws(BusError) {
        let (stream, continuation) = AsyncStream<MessageEngine.Input>.makeStream()
        let writer = SendWriter(store: store, logger: logger) { recipient, stored in
            continuation.yield(.enqueued(recipient, stored))
        }
        let engine = MessageEngine(store: store, peers: peerClient, writer: writer, logger: logger,
                                   spool: spool, spoolStored: { continuation.yield(.spoolStored($0)) })
        self.engine = engine
        self.peerClient = peerClient
        self.spool = spool
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
        spool?.startWatching(stored: { continuation.yield(.spoolStored($0)) })
        // peerd starts first and dials persistent peers at once, so a `connected` event may
        // be published before our subscription is in place (the PUB/SUB slow joiner): msgd
        // would then never deliver to that peer. Once events do reach us, peerd's list of
        // connected peers fills the gap; a peer also announced by its event is merely
        // set up twice, which restarts delivery from its last acknowledged message.
        let subscriber = self.subscriber, peerClient = self.peerClient
        Task {
            try? await subscriber.waitUntilReady([.peerd], timeout: .seconds(60))
            guard let reply = try? await peerClient.request(BusMessage(method: PeerMethod.peers.rawValue, payload: []), timeout: .seconds(10)),
                  let list = try? PeerList.decode(reply) else { return }
            for peer in list.peers where peer.connected {
                continuation.yield(.peerEvent(BusMessage(method: PeerEventType.connected.rawValue, payload: peer.encoded())))
            }
        }
        // Expiry and re-delivery checks: cheap queries, once a second.
        Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                continuation.yield(.tick)
            }
        }
    }

    public func close() {
        spool?.stopWatching()
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
        /// `SendWriter` committed these messages (one recipient, consecutive sequence numbers).
        case enqueued(PublicKey, [StoredOutgoing])
        /// A spool import stored messages from this sender.
        case spoolStored(PublicKey)
    }

    /// What msgd knows of a connected peer.
    struct Link {
        /// Numbers the peer's connections: a delivery run that was waiting on peerd when
        /// its connection was replaced must not touch the new connection's state.
        var generation: UInt64 = 0
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
        /// Batches handed over on this connection and not yet acknowledged (LNP peers):
        /// the last sequence number of each, its message count and payload bytes.
        var unacknowledged: [(through: UInt64, count: Int, bytes: Int)] = []
        var unacknowledgedCount = 0
        var unacknowledgedBytes = 0
        /// The peer acknowledged every message through this one (on this connection).
        var acknowledgedThrough: UInt64 = 0
        /// When the acknowledgements last moved forward, or the first unacknowledged batch
        /// went out: the clock of the retransmission timeout.
        var lastProgress = ContinuousClock.now
        /// Grows while acknowledgements stay away, back to the minimum once one arrives.
        var retransmitTimeout = MessageEngine.minimumRetransmitTimeout

        /// The receiver stores what it gets before it acknowledges it, and until then
        /// holds it in memory (peerd's batches, the bus, msgd's inbound queue): a sender
        /// that ran ahead without bound would grow the receiver's memory without bound.
        var windowIsFull: Bool {
            reliable && (unacknowledgedBytes >= MessageEngine.windowBytes || unacknowledgedCount >= MessageEngine.windowMessages)
        }

        mutating func acknowledge(through seq: UInt64) {
            if seq > acknowledgedThrough {
                acknowledgedThrough = seq
                lastProgress = .now
                retransmitTimeout = MessageEngine.minimumRetransmitTimeout
            }
            while let first = unacknowledged.first, first.through <= seq {
                unacknowledgedCount -= first.count
                unacknowledgedBytes -= first.bytes
                unacknowledged.removeFirst()
            }
        }

        /// Frame links (UDP, serial) lose messages inside a live session, and a lost message
        /// stops the receiver's contiguous acknowledgement: after `retransmitTimeout` without
        /// progress, everything after the last acknowledged message goes again (go-back-N;
        /// the receiver keeps what arrived ahead and drops what it has). On a stream link
        /// this only fires when the peer has stopped answering altogether.
        mutating func retransmitIfDue(now: ContinuousClock.Instant) -> Bool {
            guard reliable, !unacknowledged.isEmpty, now - lastProgress >= retransmitTimeout else { return false }
            sentThroughSeq = acknowledgedThrough
            unacknowledged.removeAll()
            unacknowledgedCount = 0
            unacknowledgedBytes = 0
            lastProgress = now
            retransmitTimeout = min(retransmitTimeout * 2, MessageEngine.maximumRetransmitTimeout)
            return true
        }

        mutating func handedOver(through seq: UInt64, count: Int, bytes: Int) {
            sentThroughSeq = seq
            guard reliable else { return }
            if unacknowledged.isEmpty { lastProgress = .now }
            unacknowledged.append((seq, count, bytes))
            unacknowledgedCount += count
            unacknowledgedBytes += bytes
        }
    }

    struct RecvWaiter {
        let request: RecvRequest
        let responder: BusResponder
        let deadline: ContinuousClock.Instant
    }

    static let batchBytes = 4 << 20
    static let maximumBatchCount = 5_000
    /// At most this many payload bytes, and messages, sent to an LNP peer and not yet
    /// acknowledged (see `Link.windowIsFull`): enough to keep a fast link busy while the
    /// receiver commits, little enough to bound its memory.
    static let windowBytes = 32 << 20
    static let minimumRetransmitTimeout: Duration = .seconds(3)
    static let maximumRetransmitTimeout: Duration = .seconds(60)
    static let windowMessages = 40_000
    /// Payload bytes all outboxes together may hold; past it, delivery reads from the store.
    static let outboxLimit = 64 << 20
    private let store: MessageStore
    private let peers: BusClient
    private let writer: SendWriter
    private let logger: Logger
    private var links: [PublicKey: Link] = [:]
    /// Generations handed out to `Link`s so far.
    private var linkGenerations: UInt64 = 0
    /// Messages just stored, per recipient, so delivery need not read them back.
    private var outboxes: [PublicKey: Outbox] = [:]
    private var outboxBytes = 0
    /// The latest ack sent to each LNP peer, until peerd took one into its queue. A sender
    /// whose window is full sends nothing until it hears an ack, so an ack peerd refused
    /// (its queue full of our own messages) must go again: `tick` resends these.
    private var acksOwed: [PublicKey: UInt64] = [:]
    private var waiters: [RecvWaiter] = []
    private var publish: @Sendable (BusMessage) -> Void = { _ in }
    private let spool: SpoolLink?
    private let spoolStored: @Sendable (PublicKey) -> Void

    init(store: MessageStore, peers: BusClient, writer: SendWriter, logger: Logger,
         spool: SpoolLink? = nil, spoolStored: @escaping @Sendable (PublicKey) -> Void = { _ in }) {
        self.store = store
        self.peers = peers
        self.writer = writer
        self.logger = logger
        self.spool = spool
        self.spoolStored = spoolStored
    }

    func setPublisher(_ publish: @escaping @Sendable (BusMessage) -> Void) { self.publish = publish }

    func handle(_ input: Input) async {
        switch input {
        case let .request(message, responder): handleRequest(message, responder)
        case let .peerEvent(event): handlePeerEvent(event)
        case let .inboundReady(queue): receiveGathered(queue.takeAll())
        case .tick: tick()
        case let .deliver(peer): await deliver(to: peer)
        case let .enqueued(peer, stored): enqueued(stored, to: peer)
        case let .spoolStored(sender):
            publish(BusMessage(method: MessageEventType.received.rawValue, payload: NodeIDRequest(nodeID: sender).encoded()))
            answerWaiters(onlyExpired: false, storedFrom: sender)
        }
    }

    // MARK: requests

    private func handleRequest(_ message: BusMessage, _ responder: BusResponder) {
        do throws(WireError) {
            switch MessageMethod(rawValue: message.method) {
            case .send:
                let request = try SendRequest.decode(message.payload)
                guard !request.messages.isEmpty else { return responder.reply(MessageIDs(ids: []).encoded()) }
                // Stored and answered by the writer; `.enqueued` then starts delivery.
                writer.submit(request, responder)
            case .recv:
                let request = try RecvRequest.decode(message.payload)
                let waiter = RecvWaiter(request: request, responder: responder,
                                        deadline: .now + .milliseconds(Int64(request.waitMilliseconds)))
                answerOffEngine(waiter, isNew: true)
            case .status:
                let request = try StatusRequest.decode(message.payload)
                let found: StoredOutgoing?
                do {
                    found = try store.status(of: request.id)
                } catch {
                    logger.error("msgd: cannot read the status of \(Hex.encode(request.id)): \(error)")
                    return responder.fail(code: RPCErrorCode.storage.rawValue, message: "the node could not read the message: \(error)")
                }
                guard let message = found else {
                    return responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "no message with id \(Hex.encode(request.id)) was sent from this node")
                }
                responder.reply(StatusReply(id: message.id, recipient: message.recipient, state: message.state.description,
                                            link: message.link, createdAtMicros: UInt64(message.createdAt.timeIntervalSince1970 * 1_000_000)).encoded())
            case .spoolExport, .spoolImport:
                guard let spool else { return responder.fail(code: RPCErrorCode.refused.rawValue, message: "this node has no spool link") }
                spool.handle(message, responder, stored: spoolStored)
            case nil:
                responder.fail(code: RPCErrorCode.unknownMessage.rawValue, message: "msgd has no method \(message.method)")
            }
        } catch {
            logger.warning("msgd: malformed request \(message.method): \(error)")
            responder.fail(code: RPCErrorCode.invalidRequest.rawValue, message: "malformed request: \(error)")
        }
    }

    /// A reply carries at most this many payload bytes (and at least one message), well
    /// under the bus's 64 MiB message limit. Each reply is copied several times on its way
    /// (encoding, bus frames, the front door): 8 MiB buffers stay in malloc's heap and are
    /// reused, where 32 MiB ones were mapped and zero-filled by the kernel every time.
    static let recvReplyBytes = 8 << 20

    /// Reads and encodes a `recv` reply on a task of its own: thousands of rows must not
    /// hold up the engine (and with it storing, acknowledging and delivering). A waiter
    /// that finds nothing comes back to the engine, which checks once more before it
    /// parks it, so no store in between goes unnoticed.
    private nonisolated func answerOffEngine(_ waiter: RecvWaiter, isNew: Bool) {
        let store = self.store, logger = self.logger
        Task.detached { [self] in
            let found: IncomingReply
            switch Self.incoming(store, for: waiter.request) {
            case let .success(reply): found = reply
            case let .failure(error): return Self.fail(waiter, error, logger)
            }
            if found.count > 0 || waiter.request.waitMilliseconds == 0 || waiter.deadline <= .now {
                waiter.responder.reply(found.bytes)
            } else {
                await self.park(waiter, isNew: isNew)
            }
        }
    }

    private func park(_ waiter: RecvWaiter, isNew: Bool) {
        let found: IncomingReply
        switch Self.incoming(store, for: waiter.request) {
        case let .success(reply): found = reply
        case let .failure(error): return Self.fail(waiter, error, logger)
        }
        guard found.count == 0 else { return waiter.responder.reply(found.bytes) }
        waiters.append(waiter)
        if isNew { scheduleWaiterTimeout(after: .milliseconds(Int64(waiter.request.waitMilliseconds))) }
    }

    /// A row the store cannot read (a damaged payload segment) fails this `recv` with the
    /// store's sentence; msgd goes on serving everything else.
    private static func fail(_ waiter: RecvWaiter, _ error: StoreError, _ logger: Logger) {
        logger.error("msgd: cannot read received messages: \(error)")
        waiter.responder.fail(code: RPCErrorCode.storage.rawValue, message: "the node could not read received messages: \(error)")
    }

    /// A `recv` reply, encoded; `count` messages.
    struct IncomingReply {
        var bytes: [UInt8]
        var count: Int
    }

    /// The reply to `request`, encoded straight from the store's rows (see
    /// `MessageStore.visitIncoming`); an error only if not even the first message could be
    /// read (the messages before a damaged one still go out, and the next `recv` reports
    /// it). At most `recvReplyBytes` of payload, and always at least one message.
    private static func incoming(_ store: MessageStore, for request: RecvRequest) -> Result<IncomingReply, StoreError> {
        let limit = Int(min(request.limit == 0 ? 10_000 : request.limit, 10_000))
        var reply = IncomingListBuilder(capacity: 64 * 1024)
        var payloadBytes = 0
        do {
            _ = try store.visitIncoming(afterRowID: Int64(clamping: request.afterRowID), from: request.from, limit: limit) { row in
                if reply.count > 0 && payloadBytes + row.payload.count > Self.recvReplyBytes { return false }
                payloadBytes += row.payload.count
                reply.append(rowID: UInt64(row.rowID), id: row.id, from: row.sender, type: row.type, payload: row.payload,
                             receivedAtMicros: UInt64(clamping: row.receivedAtMillis) &* 1_000)
                return true
            }
        } catch {
            if reply.count == 0 { return .failure(error) }
        }
        return .success(IncomingReply(bytes: reply.finish(), count: reply.count))
    }

    private func scheduleWaiterTimeout(after delay: Duration) {
        Task { [weak self] in
            try? await Task.sleep(for: delay)
            await self?.answerWaiters(onlyExpired: true)
        }
    }

    /// Answers waiting `recv`s whose time is up, and, after messages from `storedFrom`
    /// were stored, hands those that may now have messages to `answerOffEngine`.
    private func answerWaiters(onlyExpired: Bool, storedFrom: PublicKey? = nil) {
        let now = ContinuousClock.now
        waiters.removeAll { waiter in
            if !onlyExpired, waiter.request.from == nil || waiter.request.from == storedFrom {
                answerOffEngine(waiter, isNew: false)
                return true
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
                linkGenerations += 1
                links[peer.nodeID] = Link(generation: linkGenerations, reliable: reliable, address: peer.address)
                if reliable, let through = try? store.highestContiguousSeq(from: peer.nodeID), through > 0 {
                    // Tell a sender that restarted what we already hold, so it resends only the rest.
                    sendAck(to: peer.nodeID, through: through)
                }
                startDelivery(to: peer.nodeID)
            case .disconnected:
                let nodeID = try PeerDisconnectedEvent.decode(event.payload).nodeID
                links[nodeID] = nil
                // The next connection starts with an ack of its own.
                acksOwed[nodeID] = nil
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
        var byPeer: [PublicKey: [WireReader]] = [:]
        for payload in events {
            do {
                let batch = try PeerMessagesEvent.decodeInPlace(payload)
                if byPeer[batch.nodeID] == nil { order.append(batch.nodeID) }
                byPeer[batch.nodeID, default: []] += batch.messages
            } catch {
                logger.warning("msgd: malformed messages event from peerd: \(error)")
            }
        }
        for peer in order { receive(byPeer[peer] ?? [], from: peer) }
    }

    private func receive(_ messages: [WireReader], from sender: PublicKey) {
        var toStore: [(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])] = []
        toStore.reserveCapacity(messages.count)
        var sawEnvelope = false
        // Acknowledgements are cumulative: only the highest of a round is recorded, so a
        // round costs one transaction however many acks it carries.
        var highestAck: UInt64?
        for message in messages {
            var reader = message
            guard let type = try? reader.readU16(field: "type") else { continue }
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
                    highestAck = max(highestAck ?? 0, ack.throughSeq)
                    links[sender]?.acknowledge(through: ack.throughSeq)
                } catch {
                    logger.warning("msgd: bad lnp_ack from \(sender): \(error)")
                }
            case MessageType.warning, MessageType.error:
                // After the type: channel_id (32 bytes), then the text's length and the text.
                logger.notice("msgd: \(sender) sent \(MessageType.name(of: type)): \(String(decoding: reader.readRemainingBytes().dropFirst(34), as: UTF8.self))")
            default:
                // A plain Lightning custom message from any peer: stored as received.
                toStore.append((SecureRandom.bytes(16), nil, type, reader.readRemainingBytes()))
            }
        }
        if let highestAck {
            writer.record(deliveredThrough: highestAck, for: sender)
            dropFromOutbox(sender, through: highestAck)
            publish(BusMessage(method: MessageEventType.delivered.rawValue, payload: Ack(throughSeq: highestAck).wireMessage()))
            startDelivery(to: sender)
        }
        guard !toStore.isEmpty else { return }
        do {
            let result = try store.storeIncoming(from: sender, messages: toStore, receivedAt: Date())
            if result.duplicates > 0 { logger.debug("msgd: \(result.duplicates) duplicate messages from \(sender) dropped") }
            if sawEnvelope {
                sendAck(to: sender, through: try store.highestContiguousSeq(from: sender))
            }
            if !result.stored.isEmpty {
                publish(BusMessage(method: MessageEventType.received.rawValue, payload: NodeIDRequest(nodeID: sender).encoded()))
                answerWaiters(onlyExpired: false, storedFrom: sender)
            }
        } catch {
            // Not acknowledged, so the sender will send these again.
            logger.error("msgd: cannot store messages from \(sender): \(error)")
        }
    }

    private func sendAck(to peer: PublicKey, through: UInt64) {
        acksOwed[peer] = through
        let request = BusMessage(method: PeerMethod.send.rawValue,
                                 payload: PeerSendRequest(nodeID: peer, messages: [Ack(throughSeq: through).wireMessage()]).encoded())
        let peers = self.peers
        Task {
            guard let reply = try? await peers.request(request, timeout: .seconds(10)), reply.first == PeerSendOutcome.written.rawValue else { return }
            self.ackQueued(to: peer, through: through)
        }
    }

    private func ackQueued(to peer: PublicKey, through: UInt64) {
        if acksOwed[peer] == through { acksOwed[peer] = nil }
    }

    // MARK: delivery

    private func startDelivery(to peer: PublicKey) {
        guard var link = links[peer], !link.delivering, !link.blocked, !link.windowIsFull else { return }
        link.delivering = true
        links[peer] = link
        Task { await self.deliver(to: peer) }
    }

    /// Hands undelivered messages to peerd in batches while the peer is connected and
    /// its queue has room.
    private func deliver(to peer: PublicKey) async {
        guard let generation = links[peer]?.generation else { return }
        var handedOver: (reliable: Bool, through: UInt64)?
        defer {
            if links[peer]?.generation == generation { links[peer]?.delivering = false }
            // Recorded once per run of batches, not per batch: "sent" is informational for
            // LNP peers (their acks mark delivery), and a plain peer's messages count as
            // delivered once written, the most we can know.
            if let handedOver {
                writer.record(sentThrough: handedOver.through, deliveredThrough: handedOver.reliable ? 0 : handedOver.through,
                              link: links[peer].map { Self.linkName(of: $0.address) }, for: peer)
            }
        }
        while let link = links[peer], link.generation == generation, !link.blocked, !link.windowIsFull {
            dropFromOutbox(peer, through: link.sentThroughSeq)
            var batch = outboxes[peer]?.batch(after: link.sentThroughSeq, limit: Self.maximumBatchCount, bytes: Self.batchBytes) ?? []
            if batch.isEmpty {
                do {
                    batch = try store.undelivered(to: peer, afterSeq: link.sentThroughSeq, limit: link.batchLimit)
                } catch {
                    logger.error("msgd: cannot read the queue for \(peer): \(error)")
                    return
                }
                guard !batch.isEmpty else { return }
                let averageSize = max(64, batch.reduce(0) { $0 + $1.payload.count } / batch.count)
                links[peer]?.batchLimit = max(1, min(Self.maximumBatchCount, Self.batchBytes / averageSize))
            }
            let last = batch[batch.count - 1]
            let request = BusMessage(method: PeerMethod.send.rawValue, payload: Self.sendPayload(to: peer, batch, reliable: link.reliable))
            let reply: [UInt8]
            do {
                reply = try await peers.request(request, timeout: .seconds(30))
            } catch {
                logger.notice("msgd: delivery to \(peer) paused: \(error)")
                return
            }
            // The connection this batch went to may have been replaced meanwhile (the peer
            // restarted): the new one starts from what the peer acknowledges, so this
            // batch must not count as sent on it, or its messages would wait for a
            // retransmission timeout behind later ones.
            guard links[peer]?.generation == generation else { return }
            if reply.first == PeerSendOutcome.queueFull.rawValue {
                links[peer]?.blocked = true
                return
            }
            links[peer]?.handedOver(through: last.seq, count: batch.count, bytes: batch.reduce(0) { $0 + $1.payload.count })
            handedOver = (link.reliable, last.seq)
        }
    }

    /// The link kind a peer's session runs on, from the address peerd reports: a scheme
    /// (`udp`, `serial`), `tor` for an onion, else `tcp`.
    static func linkName(of address: String) -> String {
        if let scheme = address.range(of: "://").map({ String(address[..<$0.lowerBound]) }), !scheme.isEmpty { return scheme }
        return address.contains(".onion:") ? "tor" : "tcp"
    }

    /// The bytes of `PeerSendRequest(nodeID: peer, messages: ...)` holding each message as
    /// an `lnp_message` (or, to a plain Lightning peer, as a message of the user's type),
    /// written in one pass into one buffer: no array per message, no second copy.
    static func sendPayload(to peer: PublicKey, _ batch: [StoredOutgoing], reliable: Bool) -> [UInt8] {
        func size(_ message: StoredOutgoing) -> Int {
            reliable ? Envelope.wireSize(payloadCount: message.payload.count) : 2 + message.payload.count
        }
        var writer = WireWriter(capacity: batch.reduce(33 + 4) { $0 + 4 + size($1) })
        writer.writeNodeID(peer)
        writer.writeU32(UInt32(batch.count))
        for message in batch {
            writer.writeU32(UInt32(size(message)))
            if reliable {
                Envelope.write(seq: message.seq, id: message.id, type: message.type, payload: message.payload, into: &writer)
            } else {
                writer.writeU16(message.type)
                writer.writeBytes(message.payload)
            }
        }
        return writer.bytes
    }

    // MARK: outbox

    private func enqueued(_ stored: [StoredOutgoing], to peer: PublicKey) {
        // Messages with an expiry may expire before they go out; only the store knows.
        let bytes = stored.reduce(0) { $0 + $1.payload.count }
        if stored.allSatisfy({ $0.expiresAt == nil }), outboxBytes + bytes <= Self.outboxLimit,
           outboxes[peer, default: Outbox()].append(stored) {
            outboxBytes += bytes
        }
        startDelivery(to: peer)
    }

    private func dropFromOutbox(_ peer: PublicKey, through seq: UInt64) {
        guard let dropped = outboxes[peer]?.drop(through: seq), dropped.count > 0 else { return }
        outboxBytes -= dropped.bytes
        if outboxes[peer]?.isEmpty == true { outboxes[peer] = nil }
    }

    private func tick() {
        for (peer, through) in acksOwed where links[peer] != nil { sendAck(to: peer, through: through) }
        let now = ContinuousClock.now
        for peer in Array(links.keys) where links[peer]?.delivering == false {
            if links[peer]?.retransmitIfDue(now: now) == true {
                logger.info("msgd: no acknowledgement from \(peer) for a while; sending again from message \((links[peer]?.acknowledgedThrough ?? 0) + 1)")
            }
        }
        _ = try? store.expire(now: Date())
        answerWaiters(onlyExpired: true)
        for (peer, link) in links where !link.delivering && !link.blocked && !link.windowIsFull { startDelivery(to: peer) }
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

/// Messages to one recipient that `send` just stored, in sequence order without gaps, kept
/// in memory until handed to peerd, so delivery does not read back from SQLite what it
/// wrote a moment ago. Only a shortcut: the store still holds every message, and delivery
/// reads it whenever the outbox does not start right after what was handed over (after a
/// reconnect, a restart, or when the outbox was full).
struct Outbox {
    private var messages: [StoredOutgoing] = []
    private var head = 0

    var isEmpty: Bool { head == messages.count }

    /// Appends a batch that follows the last message held; false (and nothing appended)
    /// if it does not, since the outbox never has gaps.
    mutating func append(_ batch: [StoredOutgoing]) -> Bool {
        guard let first = batch.first else { return true }
        if !isEmpty, messages[messages.count - 1].seq + 1 != first.seq { return false }
        if head > 0 && head * 2 >= messages.count {
            messages.removeFirst(head)
            head = 0
        }
        messages += batch
        return true
    }

    /// Forgets the messages up to `seq`; returns how many and their payload bytes.
    mutating func drop(through seq: UInt64) -> (count: Int, bytes: Int) {
        var count = 0, bytes = 0
        while head < messages.count, messages[head].seq <= seq {
            bytes += messages[head].payload.count
            // Frees the payload now; the slot itself goes at the next compaction.
            messages[head].payload = []
            head += 1
            count += 1
        }
        if isEmpty {
            messages.removeAll()
            head = 0
        }
        return (count, bytes)
    }

    /// The messages right after `seq`: at most `limit`, and within `bytes` of payload
    /// unless the first alone is larger. Empty when the outbox does not hold `seq + 1`.
    func batch(after seq: UInt64, limit: Int, bytes: Int) -> [StoredOutgoing] {
        guard head < messages.count, messages[head].seq == seq + 1 else { return [] }
        var end = head, total = 0
        while end < messages.count, end - head < limit {
            let size = messages[end].payload.count
            if end > head && total + size > bytes { break }
            total += size
            end += 1
        }
        return Array(messages[head..<end])
    }
}
