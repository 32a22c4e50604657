import LNPTransport
import NIOCore
import NIOPosix

/// Opens outbound TCP connections. The transport installs its session handler through
/// `initialize` once the byte stream to the peer is ready, so a proxying dialer (SOCKS
/// for Tor) can first negotiate with its proxy on the same channel.
public protocol TCPDialer: Sendable {
    /// Whether `host` can be dialled this way (the direct dialer cannot reach onions).
    func canReach(_ host: Host) -> Bool

    /// Why `host` cannot be dialled, for the error of a refused `connect`.
    func refusalReason(for host: Host) -> String

    func dial(
        host: Host, port: UInt16, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel>
}

extension TCPDialer {
    public func refusalReason(for host: Host) -> String {
        host.isOnion ? "onion services need tor (--tor-socks, --tor-control or --tor-launch)" : "this dialer cannot reach \(host)"
    }
}

/// Plain TCP to IP addresses and DNS names.
public struct DirectTCPDialer: TCPDialer {
    public init() {}

    public func canReach(_ host: Host) -> Bool { !host.isOnion }

    public func dial(
        host: Host, port: UInt16, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer(initialize)
        switch host {
        case .ipv4, .ipv6:
            do {
                return bootstrap.connect(to: try SocketAddress(ipAddress: host.description, port: Int(port)))
            } catch {
                return eventLoop.makeFailedFuture(error)
            }
        case let .dns(name):
            return bootstrap.connect(host: name, port: Int(port))
        case .onion:
            return eventLoop.makeFailedFuture(
                TransportError.unsupportedAddress(host.description, reason: "onion services are reached through the Tor transport"))
        }
    }
}
