import Foundation
import GRDBSQLite

/// Copies committed pages from the WAL into the database file on a thread and connection
/// of its own, so the writer does not: SQLite's automatic checkpoint runs inside the commit
/// that crosses the threshold, and there writes the WAL's pages a second time and fsyncs
/// the database, which made every sixteenth megabyte of messages wait for both.
///
/// Checkpoints are PASSIVE: they never block the writer or readers and never wait for
/// them; the writer's automatic checkpoint stays on at a higher threshold in case this
/// thread falls behind. Durability does not depend on checkpoints at all: a commit is
/// durable once its WAL frames are fsynced.
final class WALCheckpointer: @unchecked Sendable {
    /// The writer's own checkpoint starts only past this many pages in the WAL (16 KiB
    /// pages: 128 MiB), well beyond what this thread lets pile up in normal operation.
    static let writerThresholdPages: Int32 = 8_192
    /// How often it copies what was committed since the last round.
    static let interval: TimeInterval = 0.05

    private let connection: OpaquePointer
    private let lock = NSCondition()
    /// Guarded by `lock`.
    private var stopping = false
    private var stopped = false

    /// Opens a second connection to `path`; nil if it cannot (the writer then keeps
    /// checkpointing alone, as SQLite does by default).
    init?(path: String) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX
        guard sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK, let handle else {
            sqlite3_close_v2(handle)
            return nil
        }
        connection = handle
        let thread = Thread { [self] in run() }
        thread.name = "LNPStore.checkpoint"
        thread.start()
    }

    private func run() {
        while true {
            lock.lock()
            if !stopping { _ = lock.wait(until: Date(timeIntervalSinceNow: Self.interval)) }
            let stop = stopping
            lock.unlock()
            if stop { break }
            // With nothing to copy this only reads the WAL index: no IO, no fsync. A
            // failure (another checkpoint holds the lock) just waits for the next round.
            var logFrames: Int32 = -1
            _ = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, &logFrames, nil)
            if logFrames < 0 {
                // A connection that has not read yet has not opened the WAL, and SQLite then
                // takes the checkpoint for a no-op (-1 frames): one read opens it.
                _ = sqlite3_exec(connection, "SELECT count(*) FROM sqlite_master", nil, nil, nil)
            }
        }
        sqlite3_close_v2(connection)
        lock.lock()
        stopped = true
        lock.broadcast()
        lock.unlock()
    }

    /// Stops the thread and closes its connection; returns once both are done.
    func stop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        while !stopped { lock.wait() }
        lock.unlock()
    }
}
