import LNPTransport
import LNPTransportTCP
import LNPTransportTor
import NIOCore

/// How peerd's outbound connections leave the node: onion services through tor's SOCKS
/// port (with a separate circuit per peer), clearnet hosts directly, and with `--tor-only`
/// nothing but onion services at all (so no DNS name is ever resolved here).
struct NodeDialer: TCPDialer {
    let settings: TorSettings
    /// Where tor's SOCKS port is right now (a launched tor may come back on another port).
    let tor: TorSupervisor?
    private let direct = DirectTCPDialer()

    init(settings: TorSettings, tor: TorSupervisor?) {
        self.settings = settings
        self.tor = tor
    }

    func canReach(_ host: Host) -> Bool {
        host.isOnion ? settings.isEnabled : !settings.torOnly
    }

    func refusalReason(for host: Host) -> String {
        if host.isOnion {
            return "this node runs without Tor, so it cannot reach onion services (start lnpd with --tor-socks, --tor-control or --tor-launch)"
        }
        return "this node runs --tor-only, so clearnet addresses are refused; use the peer's .onion address"
    }

    func dial(
        host: Host, port: UInt16, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        guard canReach(host) else {
            return eventLoop.makeFailedFuture(TransportError.unsupportedAddress(host.description(port: port), reason: refusalReason(for: host)))
        }
        guard host.isOnion else {
            return direct.dial(host: host, port: port, on: eventLoop, connectTimeout: connectTimeout, initialize: initialize)
        }
        guard let tor, let socks = tor.socksAddress else {
            let why = tor?.status.summary ?? "tor is not configured"
            return eventLoop.makeFailedFuture(TransportError.connectFailed(
                address: host.description(port: port), reason: "tor is not ready yet (\(why))"))
        }
        // Onion circuits take seconds to build: give tor its own, longer bound.
        let socksDialer = TorSOCKSDialer(proxy: socks, torOnly: settings.torOnly, timeout: .seconds(Self.onionConnectTimeoutSeconds))
        return socksDialer.dial(host: host, port: port, on: eventLoop, connectTimeout: connectTimeout, initialize: initialize)
    }

    /// tor's own SocksTimeout is 120 s, and a client that asked for an onion before its
    /// descriptor was re-published can stay "waiting for circuit" for minutes (seen on the
    /// test network after a tor restart). Each dial uses a new TorSOCKSDialer, so new SOCKS
    /// credentials and new circuits: giving up after 30 s and redialling gets around it.
    static let onionConnectTimeoutSeconds: Int64 = 30
}
