import LNPTransport
import NIOConcurrencyHelpers
import NIOCore

/// A ready session as the transport's registry holds it; safe to use from any thread.
final class UDPPeerConnection: Sendable {
    let linkID: UInt64
    let socket: UDPSocket
    let remote: SocketAddress
    let info: PeerInfo
    private let queueLimit: Int
    private let queue = NIOLockedValueBox(Gauge())

    /// Message bytes handed to the socket's loop and not yet written.
    private struct Gauge {
        var bytes = 0
        /// A `send` was refused; `.writable` is owed once the queue drains to half.
        var refused = false
    }

    init(linkID: UInt64, socket: UDPSocket, remote: SocketAddress, queueLimit: Int, info: PeerInfo) {
        self.linkID = linkID
        self.socket = socket
        self.remote = remote
        self.queueLimit = queueLimit
        self.info = info
    }

    var queuedBytes: Int { queue.withLockedValue(\.bytes) }

    /// Takes `bytes` unless the queue is at its limit or the socket's own buffer is over
    /// its high-water mark. An empty queue takes any batch, or a large one could never go.
    func reserve(_ bytes: Int) -> Bool {
        let socketWritable = socket.channel.isWritable
        return queue.withLockedValue { queue in
            guard queue.bytes == 0 || queue.bytes + bytes <= queueLimit, socketWritable else {
                queue.refused = true
                return false
            }
            queue.bytes += bytes
            return true
        }
    }

    /// Returns true when a refused sender should now hear `.writable`.
    func release(_ bytes: Int) -> Bool {
        queue.withLockedValue { queue in
            queue.bytes -= bytes
            return Self.owesWritable(&queue, limit: queueLimit)
        }
    }

    /// The socket drained; `.writable` is owed if our own count is low too.
    func clearRefusalIfDrained() -> Bool {
        queue.withLockedValue { Self.owesWritable(&$0, limit: queueLimit) }
    }

    private static func owesWritable(_ queue: inout Gauge, limit: Int) -> Bool {
        guard queue.refused, queue.bytes < limit / 2 else { return false }
        queue.refused = false
        return true
    }

    func close(_ reason: LinkFailure) {
        let socket = socket
        let remote = remote
        let linkID = linkID
        socket.channel.eventLoop.execute { socket.handler.value.close(remote, linkID: linkID, reason: reason) }
    }
}

/// One sentence for an error from NIO or the system.
func describe(_ error: any Error) -> String {
    switch error {
    case let error as TransportError: error.description
    case let error as IOError: error.description
    case let error as ChannelError:
        switch error {
        case .ioOnClosedChannel, .alreadyClosed: "the socket is closed"
        default: "\(error)"
        }
    default: "\(error)"
    }
}
