import Foundation
import LNPBus
import LNPCrypto
import LNPRPC
import LNPStore
import Logging

/// Stores `send` requests beside the engine, not on it: an fsync then no longer holds up
/// delivery, acknowledgements and `recv`, which is what kept each daemon mostly idle
/// under load.
///
/// Requests that arrive while a commit is in progress are gathered and the next round
/// stores consecutive requests to one recipient in one transaction (group commit): a
/// client with several batches in flight pays one fsync for all of them. Every request
/// is answered only after its transaction is on disk, and a group whose transaction
/// fails is retried request by request, so one request's error never fails another.
final class SendWriter: @unchecked Sendable {
    struct Pending {
        let request: SendRequest
        let responder: BusResponder
    }

    /// One transaction carries at most this many payload bytes (and at least one request).
    static let groupBytes = 32 << 20

    private let store: MessageStore
    private let logger: Logger
    /// Called on the writer's queue after each commit, in commit order.
    private let onStored: @Sendable (PublicKey, [StoredOutgoing]) -> Void
    private let queue = DispatchQueue(label: "msgd.send-writer")
    private let lock = NSLock()
    /// Guarded by `lock`.
    private var pending: [Pending] = []
    /// Guarded by `lock`: a drain is scheduled or running.
    private var draining = false
    /// Guarded by `lock`: delivery progress not yet recorded, per recipient. Both marks are
    /// cumulative, so only the highest of each matters and a burst costs one write.
    private var progress: [PublicKey: (sent: UInt64, delivered: UInt64, link: String)] = [:]
    private var progressScheduled = false

    init(store: MessageStore, logger: Logger, onStored: @escaping @Sendable (PublicKey, [StoredOutgoing]) -> Void) {
        self.store = store
        self.logger = logger
        self.onStored = onStored
    }

    func submit(_ request: SendRequest, _ responder: BusResponder) {
        lock.lock()
        pending.append(Pending(request: request, responder: responder))
        let start = !draining
        draining = true
        lock.unlock()
        if start { queue.async { self.drain() } }
    }

    /// Records, soon and off the engine, that messages to `peer` went out (`sentThrough`)
    /// or were acknowledged (`deliveredThrough`); 0 leaves a mark alone. Neither needs to be
    /// on disk at once: a mark lost in a crash only means a few messages are sent again,
    /// and the receiver drops what it already has.
    /// `link` names the link the sent messages went out on (`lnp-cli status` shows it).
    func record(sentThrough: UInt64 = 0, deliveredThrough: UInt64 = 0, link: String? = nil, for peer: PublicKey) {
        lock.lock()
        let old = progress[peer] ?? (0, 0, "tcp")
        progress[peer] = (max(old.sent, sentThrough), max(old.delivered, deliveredThrough), link ?? old.link)
        let schedule = !progressScheduled
        progressScheduled = true
        lock.unlock()
        if schedule { queue.async { self.writeProgress() } }
    }

    private func writeProgress() {
        lock.lock()
        let taken = progress
        progress = [:]
        progressScheduled = false
        lock.unlock()
        for (peer, marks) in taken {
            do {
                if marks.sent > 0 { try store.markSent(to: peer, throughSeq: marks.sent, link: marks.link) }
                if marks.delivered > 0 { try store.markDelivered(to: peer, throughSeq: marks.delivered) }
            } catch {
                logger.error("msgd: cannot record delivery progress for \(peer): \(error)")
            }
        }
    }

    private func drain() {
        while true {
            lock.lock()
            let taken = pending
            pending = []
            if taken.isEmpty { draining = false }
            lock.unlock()
            guard !taken.isEmpty else { return }
            let requests = taken.map(\.request)
            var start = 0
            while start < taken.count {
                let end = Self.groupEnd(of: requests, from: start)
                store(taken[start..<end])
                start = end
            }
        }
    }

    /// The end of the group that starts at `start`: consecutive requests to the same
    /// recipient within the store's batch count and `groupBytes`.
    static func groupEnd(of requests: [SendRequest], from start: Int) -> Int {
        let recipient = requests[start].recipient
        var count = requests[start].messages.count
        var bytes = payloadBytes(requests[start])
        var end = start + 1
        while end < requests.count, requests[end].recipient == recipient {
            let nextCount = requests[end].messages.count, nextBytes = payloadBytes(requests[end])
            guard count + nextCount <= MessageStore.maxBatchCount, bytes + nextBytes <= groupBytes else { break }
            count += nextCount
            bytes += nextBytes
            end += 1
        }
        return end
    }

    private static func payloadBytes(_ request: SendRequest) -> Int {
        request.messages.reduce(0) { $0 + $1.payload.count }
    }

    private func store(_ group: ArraySlice<Pending>) {
        let recipient = group.first!.request.recipient
        if group.count > 1 {
            var messages: [(type: UInt16, payload: [UInt8])] = []
            messages.reserveCapacity(group.reduce(0) { $0 + $1.request.messages.count })
            for entry in group {
                for message in entry.request.messages { messages.append((message.type, message.payload)) }
            }
            if let stored = try? store.enqueue(to: recipient, messages: messages) {
                var offset = 0
                for entry in group {
                    let count = entry.request.messages.count
                    entry.responder.reply(MessageIDs(ids: stored[offset..<offset + count].map(\.id)).encoded())
                    offset += count
                }
                onStored(recipient, stored)
                return
            }
        }
        for entry in group {
            do {
                let stored = try store.enqueue(to: recipient, messages: entry.request.messages.map { ($0.type, $0.payload) })
                entry.responder.reply(MessageIDs(ids: stored.map(\.id)).encoded())
                onStored(recipient, stored)
            } catch {
                logger.error("msgd: cannot store messages for \(recipient): \(error)")
                entry.responder.fail(code: RPCErrorCode.storage.rawValue, message: "the node could not store the messages: \(error)")
            }
        }
    }
}
