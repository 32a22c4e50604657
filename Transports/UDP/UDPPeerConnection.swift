import LNPTransport
import NIOConcurrencyHelpers
import NIOCore

/// A ready session as the transport's registry holds it; safe to use from any thread.
final class UDPPeerConnection: Sendable {
    let linkID: UInt64
    let socket: UDPSocket
    let remote: SocketAddress
    let info: PeerInfo
    /// Message bytes handed to the socket's loop and not yet written.
    private let queue: NIOLockedValueBox<OutboundQueueGauge>

    init(linkID: UInt64, socket: UDPSocket, remote: SocketAddress, queueLimit: Int, info: PeerInfo) {
        self.linkID = linkID
        self.socket = socket
        self.remote = remote
        self.queue = NIOLockedValueBox(OutboundQueueGauge(limit: queueLimit))
        self.info = info
    }

    var queuedBytes: Int { queue.withLockedValue(\.bytes) }

    /// Takes `bytes` unless the queue is at its limit or the socket's buffer is over its
    /// high-water mark.
    func reserve(_ bytes: Int) -> Bool {
        let socketWritable = socket.channel.isWritable
        return queue.withLockedValue { $0.reserve(bytes, linkWritable: socketWritable) }
    }

    func release(_ bytes: Int) -> Bool {
        queue.withLockedValue { $0.release(bytes) }
    }

    /// The socket drained; `.writable` is owed if our own count is low too.
    func clearRefusalIfDrained() -> Bool {
        queue.withLockedValue { $0.clearRefusalIfDrained() }
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
