import Foundation
import LNPCrypto
import Testing
@testable import LNPStore

/// Prints throughput figures of a file-backed store (WAL, synchronous FULL) in batches
/// of 1,000, as wall-clock rates and process CPU time per message. No timing assertions:
/// the machine is shared, and fsync latency in particular swings with other work on the
/// disk. Run alone for figures: `swift test -c release --filter BenchmarkTests`.
/// `LNP_STORE_BENCH_MESSAGES` sets the message count (default 200,000).
@Suite(.serialized) struct BenchmarkTests {
    static let total = ProcessInfo.processInfo.environment["LNP_STORE_BENCH_MESSAGES"].flatMap(Int.init) ?? 200_000
    static let batch = 1_000

    struct Timing {
        var wall: Double
        var cpu: Double
    }

    func report(_ name: String, _ count: Int, _ timing: Timing, bytes: Int? = nil) {
        if let bytes {
            print(String(format: "store.%@: %.0f MB/s (%d × 1 MiB, wall %.3f s, cpu %.3f s)",
                         name, Double(bytes) / 1e6 / timing.wall, count, timing.wall, timing.cpu))
        } else {
            print(String(format: "store.%@: %.0f msgs/s (%d, wall %.3f s, cpu %.2f µs/msg)",
                         name, Double(count) / timing.wall, count, timing.wall, timing.cpu / Double(count) * 1e6))
        }
    }

    func time(_ body: () throws -> Void) rethrows -> Timing {
        func cpu() -> Double {
            var usage = rusage()
            #if canImport(Glibc)
            getrusage(RUSAGE_SELF.rawValue, &usage)
            #else
            getrusage(RUSAGE_SELF, &usage)
            #endif
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        }
        let cpu0 = cpu()
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Timing(wall: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, cpu: cpu() - cpu0)
    }

    @Test func smallMessages() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/bench.sqlite")
            let recipient = newKey()
            let sender = newKey()
            let total = Self.total, batch = Self.batch
            let messages = payloads(batch)

            let enqueueTime = try time {
                for _ in 0..<(total / batch) {
                    _ = try store.enqueue(to: recipient, messages: messages)
                }
            }
            report("enqueue.100", total, enqueueTime)

            let readTime = try time {
                var after: UInt64 = 0
                while true {
                    let rows = try store.undelivered(to: recipient, afterSeq: after, limit: batch)
                    guard let last = rows.last else { break }
                    after = last.seq
                }
            }
            report("undelivered.100", total, readTime)

            let sentTime = try time {
                for i in 1...(total / batch) {
                    try store.markSent(to: recipient, afterSeq: UInt64((i - 1) * batch), throughSeq: UInt64(i * batch), link: "tcp")
                }
            }
            report("markSent", total, sentTime)

            let deliveredTime = try time {
                for i in 1...(total / batch) {
                    try store.markDelivered(to: recipient, throughSeq: UInt64(i * batch))
                }
            }
            report("markDelivered", total, deliveredTime)

            // Inbound batches as msgd receives them from an LNP sender: batch-prefixed ids,
            // in-order sequence numbers.
            var batches: [[(id: [UInt8], seq: UInt64?, type: UInt16, payload: [UInt8])]] = []
            for b in 0..<(total / batch) {
                let ids = MessageStore.messageIDs(count: batch)
                batches.append((0..<batch).map { i in
                    (id: ids[i], seq: UInt64(b * batch + i + 1), type: 32769,
                     payload: [UInt8](repeating: 7, count: 100))
                })
            }
            let now = Date()
            let storeTime = try time {
                for messages in batches {
                    _ = try store.storeIncoming(from: sender, messages: messages, receivedAt: now)
                }
            }
            report("storeIncoming.100", total, storeTime)

            var read = 0
            let incomingTime = try time {
                var after: Int64 = 0
                while true {
                    let rows = try store.incoming(afterRowID: after, from: nil, limit: batch)
                    guard let last = rows.last else { break }
                    read += rows.count
                    after = last.rowID
                }
            }
            report("incoming.100", read, incomingTime)
            // What one message costs each side of a transfer, in CPU time and in wall time
            // (which adds the fsync waits of four commits per 1,000 messages).
            let senderSide = Timing(
                wall: enqueueTime.wall + sentTime.wall + deliveredTime.wall,
                cpu: enqueueTime.cpu + sentTime.cpu + deliveredTime.cpu)
            report("sender.enqueue+markSent+markDelivered", total, senderSide)
            report("receiver.storeIncoming", total, storeTime)
            #expect(read == total)
            #expect(try store.highestContiguousSeq(from: sender) == UInt64(total))
        }
    }

    @Test func largeMessages() throws {
        try withTemporaryDirectory { dir in
            let store = try MessageStore(path: dir + "/bench-large.sqlite")
            let recipient = newKey()
            let sender = newKey()
            let count = 64
            let megabyte = 1 << 20
            let payload = SecureRandom.bytes(megabyte)

            let enqueueTime = try time {
                for _ in 0..<(count / 4) {
                    _ = try store.enqueue(to: recipient, messages: Array(repeating: (type: 1, payload: payload), count: 4))
                }
            }
            report("enqueue.1MiB", count, enqueueTime, bytes: count * megabyte)

            let readTime = try time {
                var after: UInt64 = 0
                while true {
                    let rows = try store.undelivered(to: recipient, afterSeq: after, limit: 4)
                    guard let last = rows.last else { break }
                    after = last.seq
                }
            }
            report("undelivered.1MiB", count, readTime, bytes: count * megabyte)

            let now = Date()
            let storeTime = try time {
                for b in 0..<(count / 4) {
                    let messages = (0..<4).map { i in
                        (id: SecureRandom.bytes(16), seq: UInt64?(UInt64(b * 4 + i + 1)), type: UInt16(1), payload: payload)
                    }
                    _ = try store.storeIncoming(from: sender, messages: messages, receivedAt: now)
                }
            }
            report("storeIncoming.1MiB", count, storeTime, bytes: count * megabyte)

            var bytes = 0
            let incomingTime = try time {
                var after: Int64 = 0
                while true {
                    let rows = try store.incoming(afterRowID: after, from: sender, limit: 4)
                    guard let last = rows.last else { break }
                    bytes += rows.reduce(0) { $0 + $1.payload.count }
                    after = last.rowID
                }
            }
            report("incoming.1MiB", count, incomingTime, bytes: bytes)
            #expect(bytes == count * megabyte)
        }
    }

    /// What picked `MessageStore.defaultExternalPayloadThreshold`: CPU time (the process,
    /// so SQLite's checkpoint thread too, up to `close`, which checkpoints what is left) and
    /// wall time to enqueue 96 MiB in 32 MiB transactions, payloads inline in SQLite vs in
    /// segment files, per payload size. Only with `LNP_STORE_BENCH_THRESHOLD=1`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["LNP_STORE_BENCH_THRESHOLD"] == "1"))
    func payloadThreshold() throws {
        let total = 96 << 20, group = 32 << 20
        for size in [4 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 1 << 20] {
            let payload = SecureRandom.bytes(size)
            for (mode, threshold) in [("inline", Int.max), ("segment", 0)] {
                try withTemporaryDirectory { dir in
                    let store = try MessageStore(path: dir + "/bench-threshold.sqlite", externalPayloadThreshold: threshold)
                    let recipient = newKey()
                    let messages = Array(repeating: (type: UInt16(1), payload: payload), count: group / size)
                    let timing = try time {
                        for _ in 0..<(total / group) { _ = try store.enqueue(to: recipient, messages: messages) }
                        try store.close()
                    }
                    // One message per transaction: a segment adds an fdatasync to each.
                    let single = try MessageStore(path: dir + "/bench-single.sqlite", externalPayloadThreshold: threshold)
                    let singles = 200
                    let latency = try time {
                        for _ in 0..<singles { _ = try single.enqueue(to: recipient, messages: [(type: 1, payload: payload)]) }
                    }
                    try single.close()
                    print(String(format: "store.threshold %7d B %@: cpu %.3f s/GB, wall %.0f MB/s; one per transaction %.2f ms",
                                 size, mode, timing.cpu / Double(total) * 1e9, Double(total) / 1e6 / timing.wall,
                                 latency.wall / Double(singles) * 1e3))
                }
            }
        }
    }
}
