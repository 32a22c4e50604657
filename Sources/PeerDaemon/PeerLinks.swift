import LNPCrypto
import LNPTransport
import LNPTransportTCP

/// peerd's transports, one per link kind: TCP (and Tor through it) and the frame links.
/// A connect goes to the transport of the address's scheme; send, ping and disconnect go
/// to the transport that holds the peer's session, learnt from the transports' own
/// `connected`/`disconnected` events.
final class PeerLinks: Sendable {
    let tcp: TCPTransport
    let frameTransports: [any SessionTransport]
    private let holders = LockedValue<[PublicKey: ObjectIdentifier]>([:])

    /// `--tor-only`: no clearnet, so no UDP either.
    let torOnly: Bool

    init(tcp: TCPTransport, frameTransports: [any SessionTransport], torOnly: Bool) {
        self.tcp = tcp
        self.frameTransports = frameTransports
        self.torOnly = torOnly
    }

    var all: [any SessionTransport] { [tcp] + frameTransports }

    /// Called with every event of `transport`; returns what peerd publishes for it. A node
    /// may have sessions on several transports at once (TCP and UDP, say): the one that
    /// connected last carries its messages. When that one is lost while another still
    /// holds a session, msgd hears `connected` for the survivor instead of `disconnected`,
    /// so delivery moves there at once; the loss of a session that was not carrying the
    /// node's messages is not announced at all.
    func observe(_ event: TransportEvent, from transport: any SessionTransport) -> TransportEvent? {
        let id = ObjectIdentifier(transport)
        switch event {
        case let .connected(info):
            holders.withValue { $0[info.nodeID] = id }
            return event
        case let .disconnected(nodeID, _):
            let holder = holders.withValue { $0[nodeID] }
            guard holder == id || holder == nil else { return nil }
            let survivor = all.lazy.filter { ObjectIdentifier($0) != id }
                .compactMap { other in other.peers().first { $0.nodeID == nodeID }.map { (other, $0) } }.first
            holders.withValue { $0[nodeID] = survivor.map { ObjectIdentifier($0.0) } }
            if let survivor { return .connected(survivor.1) }
            return event
        default:
            return event
        }
    }

    /// The transport that dials `address`: TCP for `NODEID@HOST:PORT` (it also explains
    /// a refusal, e.g. clearnet under --tor-only), otherwise the one that can reach it.
    func transport(for address: PeerAddress) throws(TransportError) -> any SessionTransport {
        if case .tcp = address.location { return tcp }
        if torOnly, case .udp = address.location {
            throw .unsupportedAddress(address.description, reason: "this node runs --tor-only, so UDP (clearnet) addresses are refused")
        }
        guard let transport = frameTransports.first(where: { $0.canReach(address) }) else {
            throw .unsupportedAddress(address.description, reason: "this node has no \(address.location.scheme) transport")
        }
        return transport
    }

    /// The transport with a session to `nodeID` now (TCP when none has: it then reports
    /// "not connected").
    func holding(_ nodeID: PublicKey) -> any SessionTransport {
        guard let id = holders.withValue({ $0[nodeID] }) else { return tcp }
        return all.first { ObjectIdentifier($0) == id } ?? tcp
    }

    func peers() -> [PeerInfo] { all.flatMap { $0.peers() } }

    /// Closes `nodeID`'s session on every transport and stops redialling it anywhere.
    func disconnect(_ nodeID: PublicKey) async {
        for transport in all { await transport.disconnect(nodeID) }
    }

    func shutdown() async {
        for transport in all { await transport.shutdown() }
    }
}
