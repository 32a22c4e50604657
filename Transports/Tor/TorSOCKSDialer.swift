#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import LNPTransport
import LNPTransportTCP
import NIOCore
import NIOPosix

/// Opens outbound connections through tor's SocksPort (SOCKS5), so an onion peer runs
/// the same BOLT-8 session over TCP as a clearnet one.
///
/// Names (DNS and onion) are sent to tor as names: the node never resolves them itself.
///
/// Stream isolation: every destination gets its own SOCKS username and password, so a
/// SocksPort with `IsolateSOCKSAuth` (tor's default) puts each peer on its own circuit
/// and one peer cannot link our connections to another. The username carries a random
/// nonce drawn per dialer, so two nodes (or two runs) sharing one tor never share a
/// circuit either.
///
/// Routing (`torOnly`):
/// - `true` (the default, and what a Tor-first node wants): every host goes through
///   tor, IP addresses and DNS names included, so no connection reveals our address.
/// - `false`: onion services go through tor, IP addresses and DNS names are dialled
///   directly (`DirectTCPDialer`): faster for clearnet peers, but they see our address.
/// In both modes `canReach` is true for every host.
///
/// Timeouts: `timeout` bounds the whole negotiation, the TCP connect to the proxy plus
/// tor's reply to CONNECT (which includes building a circuit and, for an onion, the
/// introduction and rendezvous). It is ours and independent of tor's `SocksTimeout`
/// (120 s by default, after which tor answers 0x06). The transport's `connectTimeout`
/// only shortens the TCP connect to the proxy; its BOLT-8 handshake timeout starts once
/// the session's handler is installed, after the negotiation.
public struct TorSOCKSDialer: TCPDialer {
    /// tor's SocksPort.
    public let proxy: SocketAddress
    public let torOnly: Bool
    public let timeout: Duration
    /// Shared by every destination of this dialer (see the type's comment).
    private let isolationNonce: String

    public init(proxy: SocketAddress, torOnly: Bool = true, timeout: Duration = .seconds(60)) {
        self.proxy = proxy
        self.torOnly = torOnly
        self.timeout = timeout
        self.isolationNonce = lowercaseHex((0..<16).map { _ in UInt8.random(in: 0...255) })
    }

    public func canReach(_ host: Host) -> Bool { true }

    /// "tor's SOCKS port 127.0.0.1:9050", as errors name it.
    public var proxyDescription: String {
        if let ip = proxy.ipAddress, let port = proxy.port {
            if case .v6 = proxy { return "tor's SOCKS port [\(ip)]:\(port)" }
            return "tor's SOCKS port \(ip):\(port)"
        }
        return "tor's SOCKS port \(proxy.pathname ?? "\(proxy)")"
    }

    /// The RFC 1929 username and password this dialer sends for `host` and `port`.
    /// The password is a digest of the destination, which fits 255 bytes however long
    /// the name is; tor only compares credentials, it does not check them.
    public func isolationCredentials(host: Host, port: UInt16) -> SOCKS5ClientNegotiation.Credentials {
        let digest = SHA256.hash(data: Array(host.description(port: port).utf8))
        let password = lowercaseHex(digest.prefix(16))
        // 36 and 32 ASCII bytes, well within RFC 1929's 255.
        return try! SOCKS5ClientNegotiation.Credentials(username: "lnp-" + isolationNonce, password: password)
    }

    public func dial(
        host: Host, port: UInt16, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        if !torOnly, !host.isOnion {
            return DirectTCPDialer().dial(host: host, port: port, on: eventLoop, connectTimeout: connectTimeout,
                                          initialize: initialize)
        }
        let address = host.description(port: port)
        let proxyDescription = self.proxyDescription
        let negotiation: SOCKS5ClientNegotiation
        do {
            negotiation = try SOCKS5ClientNegotiation(destination: .init(host), port: port,
                                                      credentials: isolationCredentials(host: host, port: port))
        } catch {
            return eventLoop.makeFailedFuture(
                TransportError.connectFailed(address: address, reason: error.description(proxy: proxyDescription)))
        }

        let timeout = TimeAmount(self.timeout)
        let negotiated = eventLoop.makePromise(of: Void.self)
        let deadline = eventLoop.scheduleTask(in: timeout) {
            negotiated.fail(NegotiationTimedOut())
        }
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(min(connectTimeout, timeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        SOCKS5ClientHandler(negotiation: negotiation, initialize: initialize, negotiated: negotiated))
                }
            }
            .connect(to: proxy)
        connected.whenFailure { negotiated.fail($0) }
        connected.whenSuccess { channel in
            // The deadline (or an initializer failure) may fail `negotiated` while the
            // channel is still open: it must not outlive the dial.
            negotiated.futureResult.whenFailure { _ in channel.close(promise: nil) }
        }
        return negotiated.futureResult
            .flatMap { connected }
            .flatMapErrorThrowing { error in
                throw TransportError.connectFailed(
                    address: address, reason: Self.reason(for: error, proxy: proxyDescription, timeout: self.timeout))
            }
            .always { _ in deadline.cancel() }
    }

    private struct NegotiationTimedOut: Error {}

    /// One sentence for why the dial failed, naming tor's SOCKS port.
    static func reason(for error: any Error, proxy: String, timeout: Duration) -> String {
        switch error {
        case let error as SOCKS5Error:
            return error.description(proxy: proxy)
        case is NegotiationTimedOut:
            return "\(proxy) did not complete the connection within \(timeout) (the dialer's own SOCKS timeout)"
        case let error as IOError where error.errnoCode == ECONNREFUSED:
            return "\(proxy) refused the connection — is tor running?"
        case let error as IOError where error.errnoCode == ECONNRESET:
            return "\(proxy) reset the connection during the SOCKS negotiation"
        case let error as NIOConnectionError
            where !error.connectionErrors.isEmpty
            && error.connectionErrors.allSatisfy({ ($0.error as? IOError)?.errnoCode == ECONNREFUSED }):
            return "\(proxy) refused the connection — is tor running?"
        case let error as ChannelError:
            switch error {
            case let .connectTimeout(limit):
                return "\(proxy) did not accept the TCP connection within \(limit) — is tor overloaded?"
            case .eof:
                return "\(proxy) closed the connection before the session started"
            default:
                return "cannot use \(proxy): \(error)"
            }
        default:
            return "cannot use \(proxy): \(error)"
        }
    }
}

private func lowercaseHex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { ($0 < 0x10 ? "0" : "") + String($0, radix: 16) }.joined()
}
