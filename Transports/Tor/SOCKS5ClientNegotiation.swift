import LNPTransport

/// The client side of a SOCKS5 CONNECT (RFC 1928, with RFC 1929 username/password),
/// without IO: the caller writes `greeting`, then feeds every byte the proxy sends to
/// `receive` in whatever chunks they arrive and does what each `Action` says.
///
/// Exactly one method is offered: username/password when credentials are given (tor
/// uses them for stream isolation, and silently falling back to no authentication
/// would merge circuits), otherwise none. Names are sent to the proxy as names, so
/// nothing is resolved locally.
public struct SOCKS5ClientNegotiation: Sendable {
    /// What the CONNECT request asks the proxy to reach.
    public enum Destination: Hashable, Sendable, CustomStringConvertible {
        /// A DNS name or "<56 chars>.onion"; 1 to 255 bytes.
        case domainName(String)
        /// 4 bytes.
        case ipv4([UInt8])
        /// 16 bytes.
        case ipv6([UInt8])

        /// Onion and DNS hosts become names (the proxy resolves them), IPs stay IPs.
        public init(_ host: Host) {
            switch host {
            case let .ipv4(bytes): self = .ipv4(bytes)
            case let .ipv6(bytes): self = .ipv6(bytes)
            case let .dns(name): self = .domainName(name)
            case let .onion(name): self = .domainName(name + ".onion")
            }
        }

        public var description: String {
            switch self {
            case let .domainName(name): name
            case let .ipv4(bytes): Host.ipv4(bytes).description
            case let .ipv6(bytes): Host.ipv6(bytes).description
            }
        }
    }

    /// RFC 1929 username and password, each 1 to 255 bytes.
    public struct Credentials: Hashable, Sendable {
        public let username: [UInt8]
        public let password: [UInt8]

        public init(username: String, password: String) throws(SOCKS5Error) {
            for (name, value) in [("username", username), ("password", password)] {
                guard (1...255).contains(value.utf8.count) else {
                    throw .invalidCredentials(reason: "the \(name) has \(value.utf8.count) bytes; RFC 1929 allows 1 to 255")
                }
            }
            self.username = Array(username.utf8)
            self.password = Array(password.utf8)
        }
    }

    public enum Action: Hashable, Sendable {
        /// The answer is incomplete: feed more bytes.
        case awaitMoreBytes
        /// Write these bytes to the proxy, then keep feeding its answers.
        case write([UInt8])
        /// The proxy is connected: from now on the stream carries the destination's bytes,
        /// and `leftover` are the first of them, which arrived with the reply.
        case connected(leftover: [UInt8])
    }

    /// The longest CONNECT reply: version, code, reserved, address type, a name of up to
    /// 255 bytes with its length byte, and the port.
    public static let maximumReplyLength = 4 + 1 + 255 + 2

    static let version: UInt8 = 0x05
    static let noAuthentication: UInt8 = 0x00
    static let usernamePassword: UInt8 = 0x02
    static let noAcceptableMethods: UInt8 = 0xFF
    static let usernamePasswordVersion: UInt8 = 0x01
    static let connectCommand: UInt8 = 0x01
    static let addressTypeIPv4: UInt8 = 0x01
    static let addressTypeDomainName: UInt8 = 0x03
    static let addressTypeIPv6: UInt8 = 0x04

    private enum State: Sendable {
        case awaitingMethodSelection
        case awaitingAuthenticationStatus
        case awaitingReply
        case connected
        case failed
    }

    /// Write this first, as soon as the connection to the proxy is open.
    public let greeting: [UInt8]
    private let offeredMethods: [UInt8]
    private let authenticationRequest: [UInt8]?
    private let connectRequest: [UInt8]
    private var state = State.awaitingMethodSelection
    /// Bytes of the current answer; never more than one answer plus one received chunk.
    private var buffer: [UInt8] = []

    public init(destination: Destination, port: UInt16, credentials: Credentials?) throws(SOCKS5Error) {
        var request: [UInt8] = [Self.version, Self.connectCommand, 0x00]
        switch destination {
        case let .domainName(name):
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                throw .invalidDestination(String(name.prefix(64)), reason: "a SOCKS5 name has 1 to 255 bytes, this one \(bytes.count)")
            }
            request += [Self.addressTypeDomainName, UInt8(bytes.count)] + bytes
        case let .ipv4(bytes):
            guard bytes.count == 4 else { throw .invalidDestination("\(bytes)", reason: "an IPv4 address has 4 bytes, not \(bytes.count)") }
            request += [Self.addressTypeIPv4] + bytes
        case let .ipv6(bytes):
            guard bytes.count == 16 else { throw .invalidDestination("\(bytes)", reason: "an IPv6 address has 16 bytes, not \(bytes.count)") }
            request += [Self.addressTypeIPv6] + bytes
        }
        request += [UInt8(port >> 8), UInt8(port & 0xff)]
        connectRequest = request

        if let credentials {
            offeredMethods = [Self.usernamePassword]
            authenticationRequest = [Self.usernamePasswordVersion, UInt8(credentials.username.count)] + credentials.username
                + [UInt8(credentials.password.count)] + credentials.password
        } else {
            offeredMethods = [Self.noAuthentication]
            authenticationRequest = nil
        }
        greeting = [Self.version, UInt8(offeredMethods.count)] + offeredMethods
    }

    /// What the proxy still owes us, for "the proxy closed the connection while we
    /// waited for …".
    public var stage: String {
        switch state {
        case .awaitingMethodSelection: "its choice of authentication method"
        case .awaitingAuthenticationStatus: "its answer to our username and password"
        case .awaitingReply: "its reply to our CONNECT request"
        case .connected: "nothing (already connected)"
        case .failed: "nothing (the negotiation had failed)"
        }
    }

    public var isConnected: Bool { if case .connected = state { true } else { false } }

    /// Takes the next bytes from the proxy. After a throw or `.connected`, every further
    /// call throws `.notNegotiating`.
    public mutating func receive(_ bytes: some Collection<UInt8>) throws(SOCKS5Error) -> Action {
        switch state {
        case .connected, .failed: throw .notNegotiating
        case .awaitingMethodSelection, .awaitingAuthenticationStatus, .awaitingReply: break
        }
        buffer.append(contentsOf: bytes)
        do {
            return try advance()
        } catch {
            state = .failed
            buffer = []
            throw error
        }
    }

    /// The proxy closed the connection: the error to report (and the negotiation is over).
    public mutating func receiveEndOfStream() -> SOCKS5Error {
        let error = SOCKS5Error.closedDuringNegotiation(stage: stage)
        state = .failed
        buffer = []
        return error
    }

    private mutating func advance() throws(SOCKS5Error) -> Action {
        switch state {
        case .awaitingMethodSelection:
            guard let answer = try takeTwoByteAnswer(version: Self.version, what: "method selection") else { return .awaitMoreBytes }
            let method = answer.1
            guard method != Self.noAcceptableMethods else { throw .refusedAllMethods(offered: offeredMethods) }
            guard offeredMethods.contains(method) else { throw .unofferedMethod(method, offered: offeredMethods) }
            if method == Self.usernamePassword, let authenticationRequest {
                state = .awaitingAuthenticationStatus
                return .write(authenticationRequest)
            }
            state = .awaitingReply
            return .write(connectRequest)

        case .awaitingAuthenticationStatus:
            guard let answer = try takeTwoByteAnswer(version: Self.usernamePasswordVersion, what: "authentication status")
            else { return .awaitMoreBytes }
            guard answer.1 == 0x00 else { throw .authenticationRejected(status: answer.1) }
            state = .awaitingReply
            return .write(connectRequest)

        case .awaitingReply:
            guard let length = try replyLength() else { return .awaitMoreBytes }
            let leftover = Array(buffer[length...])
            buffer = []
            state = .connected
            return .connected(leftover: leftover)

        case .connected, .failed:
            throw .notNegotiating
        }
    }

    /// The method selection and the RFC 1929 status are both VERSION, VALUE; the proxy
    /// may send nothing after them until we have written our next request.
    private mutating func takeTwoByteAnswer(version: UInt8, what: String) throws(SOCKS5Error) -> (UInt8, UInt8)? {
        guard let first = buffer.first else { return nil }
        guard first == version else {
            throw .malformedReply("its \(what) starts with version \(first), not \(version)")
        }
        guard buffer.count >= 2 else { return nil }
        guard buffer.count == 2 else {
            throw .malformedReply("it sent \(buffer.count - 2) unexpected byte(s) after its \(what)")
        }
        defer { buffer = [] }
        return (buffer[0], buffer[1])
    }

    /// The length of the CONNECT reply at the front of `buffer`, once all of it is there.
    /// Checks each field as soon as it arrives, so a failure or garbage is reported
    /// without waiting for bytes that may never come.
    private func replyLength() throws(SOCKS5Error) -> Int? {
        guard buffer.count >= 1 else { return nil }
        guard buffer[0] == Self.version else {
            throw .malformedReply("its reply starts with version \(buffer[0]), not 5")
        }
        guard buffer.count >= 2 else { return nil }
        if let code = SOCKS5ReplyCode(byte: buffer[1]) { throw .connectFailed(code) }
        guard buffer.count >= 3 else { return nil }
        guard buffer[2] == 0x00 else {
            throw .malformedReply("its reply has \(buffer[2]) in the reserved byte, which must be 0")
        }
        guard buffer.count >= 4 else { return nil }
        let length: Int
        switch buffer[3] {
        case Self.addressTypeIPv4: length = 4 + 4 + 2
        case Self.addressTypeIPv6: length = 4 + 16 + 2
        case Self.addressTypeDomainName:
            guard buffer.count >= 5 else { return nil }
            length = 4 + 1 + Int(buffer[4]) + 2
        default:
            throw .malformedReply("its reply has address type \(buffer[3]); only 1 (IPv4), 3 (name) and 4 (IPv6) exist")
        }
        return buffer.count >= length ? length : nil
    }
}
