/// The limits and timers of one datagram session. Every number that bounds what a peer
/// (or a noisy link) can make us hold or send is here.
public struct DatagramPolicy: Sendable, Hashable {
    /// The largest datagram the link carries (its MTU as this layer sees it): 1200 for UDP
    /// keeps clear of IPv6's 1280 minimum, a serial line picks what suits its speed.
    public var maximumDatagramSize: Int
    /// The largest message accepted from the peer or the owner; larger ones are refused.
    public var maximumMessageLength: Int
    /// The first wait before a handshake act is sent again; each later wait doubles, up to the limit.
    public var handshakeRetryInterval: Duration
    public var handshakeRetryIntervalLimit: Duration
    /// How often act one (and, until confirmed, act three) is sent before giving up.
    public var handshakeAttempts: Int
    /// How long a responder keeps a half-open handshake (act two sent, no act three).
    public var halfOpenTimeout: Duration
    /// With nothing sent for this long, a keepalive goes out, so the peer always hears from us.
    public var keepaliveInterval: Duration
    /// With nothing authenticated received for this long, the peer is taken for gone.
    public var deadPeerTimeout: Duration
    /// How long the pieces of a fragmented message wait for the rest.
    public var reassemblyTimeout: Duration
    public var maximumIncompleteMessages: Int
    /// Bytes held by all incomplete messages together.
    public var maximumReassemblyBytes: Int
    /// Datagrams held around the moment of the handshake: the initiator keeps what it sends
    /// before the responder confirms (and sends it again with act three), the responder
    /// keeps what arrives before act three.
    public var earlyDatagramLimit: Int
    /// How many times a responder answers the same act one (with the same act two) or the
    /// same act three (with a keepalive). Repeats are only ever as large as what they answer.
    public var handshakeReplyLimit: Int

    public init(
        maximumDatagramSize: Int = 1200,
        maximumMessageLength: Int = 65_535,
        handshakeRetryInterval: Duration = .milliseconds(500),
        handshakeRetryIntervalLimit: Duration = .seconds(8),
        handshakeAttempts: Int = 8,
        halfOpenTimeout: Duration = .seconds(30),
        keepaliveInterval: Duration = .seconds(15),
        deadPeerTimeout: Duration = .seconds(60),
        reassemblyTimeout: Duration = .seconds(10),
        maximumIncompleteMessages: Int = 32,
        maximumReassemblyBytes: Int = 1 << 20,
        earlyDatagramLimit: Int = 32,
        handshakeReplyLimit: Int = 8
    ) {
        self.maximumDatagramSize = maximumDatagramSize
        self.maximumMessageLength = maximumMessageLength
        self.handshakeRetryInterval = handshakeRetryInterval
        self.handshakeRetryIntervalLimit = handshakeRetryIntervalLimit
        self.handshakeAttempts = handshakeAttempts
        self.halfOpenTimeout = halfOpenTimeout
        self.keepaliveInterval = keepaliveInterval
        self.deadPeerTimeout = deadPeerTimeout
        self.reassemblyTimeout = reassemblyTimeout
        self.maximumIncompleteMessages = maximumIncompleteMessages
        self.maximumReassemblyBytes = maximumReassemblyBytes
        self.earlyDatagramLimit = earlyDatagramLimit
        self.handshakeReplyLimit = handshakeReplyLimit
    }

    public static let udp = DatagramPolicy()

    /// A serial line: slower, so longer waits. 512-byte datagrams spend about 44 ms on a
    /// 115,200 baud line and keep the framing overhead under a tenth in bulk transfer.
    public static func serial(maximumDatagramSize: Int = 512) -> DatagramPolicy {
        DatagramPolicy(maximumDatagramSize: maximumDatagramSize,
                       handshakeRetryInterval: .seconds(1), handshakeRetryIntervalLimit: .seconds(16),
                       halfOpenTimeout: .seconds(60), keepaliveInterval: .seconds(30), deadPeerTimeout: .seconds(120),
                       reassemblyTimeout: .seconds(30))
    }

    /// The largest message sent in one datagram.
    public var wholeMessageCapacity: Int { maximumDatagramSize - DatagramFormat.transportOverhead }
    /// The piece of a larger message each fragment carries.
    public var fragmentCapacity: Int { wholeMessageCapacity - DatagramFormat.fragmentHeaderSize }

    /// Datagrams needed for a message of `length` bytes.
    public func datagramCount(forMessageLength length: Int) -> Int {
        length <= wholeMessageCapacity ? 1 : (length + fragmentCapacity - 1) / fragmentCapacity
    }

    var maximumFragmentCount: Int { datagramCount(forMessageLength: maximumMessageLength) }

    public func validate() throws(DatagramSessionError) {
        guard maximumDatagramSize >= DatagramFormat.largestHandshakeDatagram else {
            throw .invalidPolicy("the datagram size \(maximumDatagramSize) is below the \(DatagramFormat.largestHandshakeDatagram) bytes of handshake act three")
        }
        guard maximumMessageLength >= 0, maximumMessageLength <= 16_777_215 else {
            throw .invalidPolicy("the largest message must be between 0 and 16,777,215 bytes, not \(maximumMessageLength)")
        }
        guard maximumFragmentCount <= DatagramFormat.maximumFragmentCount else {
            throw .invalidPolicy("a \(maximumMessageLength)-byte message would need more than \(DatagramFormat.maximumFragmentCount) fragments of \(fragmentCapacity) bytes")
        }
        guard maximumReassemblyBytes >= maximumMessageLength else {
            throw .invalidPolicy("the reassembly memory (\(maximumReassemblyBytes) bytes) cannot hold the largest message (\(maximumMessageLength) bytes)")
        }
        guard handshakeAttempts >= 1, handshakeReplyLimit >= 1, maximumIncompleteMessages >= 1, earlyDatagramLimit >= 0 else {
            throw .invalidPolicy("attempt, reply and message limits must be at least 1")
        }
        let durations = [handshakeRetryInterval, handshakeRetryIntervalLimit, halfOpenTimeout, keepaliveInterval,
                         deadPeerTimeout, reassemblyTimeout]
        guard durations.allSatisfy({ $0 > .zero }) else { throw .invalidPolicy("every interval and timeout must be positive") }
        guard keepaliveInterval < deadPeerTimeout else {
            throw .invalidPolicy("the keepalive interval must be shorter than the dead-peer timeout, or a quiet peer looks dead")
        }
    }

    /// The wait after the `attempt`-th sending of a handshake act (1-based).
    func retryInterval(afterAttempt attempt: Int) -> Duration {
        var interval = handshakeRetryInterval
        var step = 1
        while step < attempt, interval < handshakeRetryIntervalLimit {
            interval *= 2
            step += 1
        }
        return min(interval, handshakeRetryIntervalLimit)
    }
}
