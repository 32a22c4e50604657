/// Work handed to a bus thread from other threads: a locked FIFO plus the `Waker`.
///
/// The waker is written only when the queue goes from "nothing signalled" to
/// "signalled", so a burst of submissions costs one wake-up, not one per item.
final class CommandQueue<Command>: @unchecked Sendable {
    let mutex = BusMutex()
    let waker: Waker
    private var pending: [Command] = []
    private var wakePending = false
    private var closed = false
    private var stopRequested = false

    init() throws(BusError) {
        waker = try Waker()
    }

    /// False when the queue was closed; the command was not taken.
    @discardableResult
    func submit(_ command: Command) -> Bool {
        mutex.lock()
        if closed {
            mutex.unlock()
            return false
        }
        pending.append(command)
        let mustWake = !wakePending
        wakePending = true
        mutex.unlock()
        if mustWake { waker.wake() }
        return true
    }

    /// Asks the owning thread to finish; it sees this in `takeAll`.
    func requestStop() {
        mutex.lock()
        stopRequested = true
        let mustWake = !wakePending
        wakePending = true
        mutex.unlock()
        if mustWake { waker.wake() }
    }

    /// Called by the owning thread when the waker's fd is readable. `buffer` must be
    /// empty; it is swapped with the queue so both arrays keep their capacity.
    /// Returns true once a stop was requested.
    func takeAll(into buffer: inout [Command]) -> Bool {
        waker.drain()
        mutex.lock()
        swap(&pending, &buffer)
        wakePending = false
        let stop = stopRequested
        mutex.unlock()
        return stop
    }

    /// Refuses further commands and returns those not yet taken.
    func close() -> [Command] {
        mutex.lock()
        closed = true
        var leftovers: [Command] = []
        swap(&pending, &leftovers)
        mutex.unlock()
        return leftovers
    }

    var isClosed: Bool { mutex.withLock { closed } }
}
