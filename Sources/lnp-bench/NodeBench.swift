import Foundation
import LNPClient
import LNPCrypto
import LNPRPC

/// `lnp-bench node --from DIR --to DIR [--count N] [--size BYTES]`: sends N messages of
/// SIZE bytes through node A's API (batched, up to 16 batches in flight) to node B and
/// waits until B has stored all of them. The rate counts from the first send to the last
/// message stored on B, so it includes storage on both sides, the bus and the wire.
func nodeFigure(from: String, to: String, count: Int, size: Int, name: String, unit: String) async throws -> Figure {
    let sender = try NodeClient(dataDirectory: from, timeout: .seconds(120))
    let receiver = try NodeClient(dataDirectory: to, timeout: .seconds(120))
    defer {
        sender.close()
        receiver.close()
    }
    let recipient = try await receiver.info().nodeID
    let senderID = try await sender.info().nodeID
    // Skip what B already holds from earlier rounds.
    var after: UInt64 = 0
    while true {
        let old = try await receiver.recv(afterRowID: after, from: nil, limit: 10_000, wait: .zero)
        guard let last = old.last else { break }
        after = last.rowID
    }
    let payload = SecureRandom.bytes(size)
    let batchCount = max(1, min(2_000, (4 << 20) / max(size, 1)))
    let batches = stride(from: 0, to: count, by: batchCount).map { min(batchCount, count - $0) }
    // Enough batches in flight to cover the sender's fsync latency (3-5 ms per group commit
    // on this machine's disk when it is busy), bounded to 32 MiB of payload.
    let maximumInFlight = max(4, min(16, (32 << 20) / (batchCount * max(size, 1))))
    let start = ContinuousClock.now
    let sending = Task {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for batch in batches {
                if inFlight >= maximumInFlight {
                    try await group.next()
                    inFlight -= 1
                }
                group.addTask {
                    _ = try await sender.send(to: recipient, [TypedMessage](repeating: TypedMessage(type: 32_769, payload: payload), count: batch))
                }
                inFlight += 1
            }
            try await group.waitForAll()
        }
    }
    var received = 0
    while received < count {
        let batch = try await receiver.recv(afterRowID: after, from: senderID, limit: 10_000, wait: .seconds(30))
        guard let last = batch.last else {
            throw BenchFailure("node B received \(received) of \(count) messages, then nothing for 30 s")
        }
        received += batch.count
        after = last.rowID
    }
    let elapsed = start.duration(to: .now)
    try await sending.value
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let value = unit == "MB/s" ? Double(count * size) / seconds / 1e6 : Double(count) / seconds
    return Figure(name: name, value: value, unit: unit)
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
