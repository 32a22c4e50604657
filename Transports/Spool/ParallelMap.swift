import Dispatch

/// Runs `transform` over `count` indices on all cores, for the per-envelope ECDH that
/// dominates export and import (about 100 µs each, two per envelope).
enum ParallelMap {
    /// Indices go in chunks, so a thread takes many small envelopes at a time.
    static let chunk = 64

    static func map<Output: Sendable>(count: Int, _ transform: @Sendable (Int) -> Output) -> [Output] {
        guard count > 0 else { return [] }
        let slots = Slots<Output>(count: count)
        let chunks = (count + chunk - 1) / chunk
        DispatchQueue.concurrentPerform(iterations: chunks) { chunkIndex in
            for index in (chunkIndex * chunk)..<min(count, (chunkIndex + 1) * chunk) {
                slots.set(index, transform(index))
            }
        }
        return slots.take()
    }
}

/// One slot per index. Each slot is written by exactly one iteration and read only after
/// `concurrentPerform` has returned, which orders the accesses; hence the unchecked Sendable.
private final class Slots<Value>: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<Value?>

    init(count: Int) {
        storage = .allocate(capacity: count)
        storage.initialize(repeating: nil)
    }

    deinit {
        storage.deinitialize()
        storage.deallocate()
    }

    func set(_ index: Int, _ value: Value) { storage[index] = value }

    func take() -> [Value] { storage.map { $0! } }
}
