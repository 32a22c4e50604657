/// Puts fragmented messages back together, within fixed bounds on memory, on the number
/// of messages in progress and on how long one may wait for its missing pieces.
///
/// Only authenticated fragments reach it, and the replay window has already refused
/// duplicates, so a piece that arrives twice is a protocol error of the peer, not noise.
/// When a bound is hit the oldest incomplete message goes: on a lossy link it is the one
/// least likely to complete, and the message layer above retries it anyway.
struct DatagramReassembler: Sendable {
    enum Outcome: Equatable {
        case incomplete
        case complete([UInt8])
        /// The fragment contradicts the others of its message (or the limits); the whole
        /// message is dropped.
        case rejected(DatagramDropReason)
    }

    private struct Partial: Sendable {
        var pieces: [[UInt8]?]
        var piecesReceived = 0
        var bytes = 0
        let startedAt: ContinuousClock.Instant
    }

    let maximumMessageLength: Int
    let maximumFragmentCount: Int
    let maximumIncompleteMessages: Int
    let maximumBufferedBytes: Int
    let timeout: Duration

    /// Keyed by the counter of the message's first fragment.
    private var partials: [UInt64: Partial] = [:]
    private(set) var bufferedBytes = 0
    /// Messages given up because of a limit or the timeout.
    private(set) var messagesDropped = 0

    init(maximumMessageLength: Int, maximumFragmentCount: Int, maximumIncompleteMessages: Int,
         maximumBufferedBytes: Int, timeout: Duration) {
        self.maximumMessageLength = maximumMessageLength
        self.maximumFragmentCount = maximumFragmentCount
        self.maximumIncompleteMessages = maximumIncompleteMessages
        self.maximumBufferedBytes = maximumBufferedBytes
        self.timeout = timeout
    }

    var incompleteMessageCount: Int { partials.count }

    /// When the oldest incomplete message times out.
    var nextExpiry: ContinuousClock.Instant? {
        partials.values.lazy.map(\.startedAt).min().map { $0 + timeout }
    }

    /// `plaintext` is a decrypted fragment: index u16, count u16, piece.
    mutating func add(counter: UInt64, plaintext: ArraySlice<UInt8>, now: ContinuousClock.Instant) -> Outcome {
        guard plaintext.count > DatagramFormat.fragmentHeaderSize else { return .rejected(.malformedFragment) }
        let head = plaintext.startIndex
        let index = Int(plaintext[head]) << 8 | Int(plaintext[head + 1])
        let count = Int(plaintext[head + 2]) << 8 | Int(plaintext[head + 3])
        let piece = plaintext.dropFirst(DatagramFormat.fragmentHeaderSize)
        guard count >= 2, count <= maximumFragmentCount, index < count, counter >= UInt64(index) else {
            return .rejected(.malformedFragment)
        }
        let start = counter - UInt64(index)

        var partial: Partial
        if let existing = partials.removeValue(forKey: start) {
            bufferedBytes -= existing.bytes
            partial = existing
            guard partial.pieces.count == count, partial.pieces[index] == nil else {
                messagesDropped += 1
                return .rejected(.malformedFragment)
            }
        } else {
            partial = Partial(pieces: Array(repeating: nil, count: count), startedAt: now)
        }
        partial.pieces[index] = Array(piece)
        partial.piecesReceived += 1
        partial.bytes += piece.count
        guard partial.bytes <= maximumMessageLength else {
            messagesDropped += 1
            return .rejected(.messageTooLarge)
        }
        if partial.piecesReceived == count {
            var message = [UInt8]()
            message.reserveCapacity(partial.bytes)
            for case let piece? in partial.pieces { message += piece }
            return .complete(message)
        }
        makeRoom(for: partial.bytes)
        partials[start] = partial
        bufferedBytes += partial.bytes
        return .incomplete
    }

    /// Drops messages that have waited longer than the timeout; returns how many.
    mutating func expire(now: ContinuousClock.Instant) -> Int {
        let expired = partials.filter { now >= $0.value.startedAt + timeout }
        for (start, partial) in expired {
            partials[start] = nil
            bufferedBytes -= partial.bytes
        }
        messagesDropped += expired.count
        return expired.count
    }

    /// Evicts the oldest incomplete messages until one more of `bytes` fits.
    private mutating func makeRoom(for bytes: Int) {
        while !partials.isEmpty,
              partials.count >= maximumIncompleteMessages || bufferedBytes + bytes > maximumBufferedBytes {
            guard let oldest = partials.min(by: { $0.value.startedAt < $1.value.startedAt || ($0.value.startedAt == $1.value.startedAt && $0.key < $1.key) }) else { return }
            partials[oldest.key] = nil
            bufferedBytes -= oldest.value.bytes
            messagesDropped += 1
        }
    }
}
