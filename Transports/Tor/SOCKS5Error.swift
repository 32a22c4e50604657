/// A SOCKS5 reply code other than success: RFC 1928's 0x01–0x08 and tor's extended
/// onion-service codes 0xF0–0xF7 (sent on a SocksPort with `ExtendedErrors`; see tor's
/// socks-extensions.txt and proposal 304).
public enum SOCKS5ReplyCode: Hashable, Sendable, CustomStringConvertible {
    case generalFailure
    case notAllowedByRuleset
    case networkUnreachable
    case hostUnreachable
    case connectionRefused
    case ttlExpired
    case commandNotSupported
    case addressTypeNotSupported
    case onionDescriptorNotFound
    case onionDescriptorInvalid
    case onionIntroductionFailed
    case onionRendezvousFailed
    case onionMissingClientAuthorization
    case onionWrongClientAuthorization
    case onionAddressInvalid
    case onionIntroductionTimedOut
    /// A code neither RFC 1928 nor tor defines.
    case unknown(UInt8)

    /// Nil for 0x00 (success), which is not an error.
    public init?(byte: UInt8) {
        switch byte {
        case 0x00: return nil
        case 0x01: self = .generalFailure
        case 0x02: self = .notAllowedByRuleset
        case 0x03: self = .networkUnreachable
        case 0x04: self = .hostUnreachable
        case 0x05: self = .connectionRefused
        case 0x06: self = .ttlExpired
        case 0x07: self = .commandNotSupported
        case 0x08: self = .addressTypeNotSupported
        case 0xF0: self = .onionDescriptorNotFound
        case 0xF1: self = .onionDescriptorInvalid
        case 0xF2: self = .onionIntroductionFailed
        case 0xF3: self = .onionRendezvousFailed
        case 0xF4: self = .onionMissingClientAuthorization
        case 0xF5: self = .onionWrongClientAuthorization
        case 0xF6: self = .onionAddressInvalid
        case 0xF7: self = .onionIntroductionTimedOut
        default: self = .unknown(byte)
        }
    }

    public var byte: UInt8 {
        switch self {
        case .generalFailure: 0x01
        case .notAllowedByRuleset: 0x02
        case .networkUnreachable: 0x03
        case .hostUnreachable: 0x04
        case .connectionRefused: 0x05
        case .ttlExpired: 0x06
        case .commandNotSupported: 0x07
        case .addressTypeNotSupported: 0x08
        case .onionDescriptorNotFound: 0xF0
        case .onionDescriptorInvalid: 0xF1
        case .onionIntroductionFailed: 0xF2
        case .onionRendezvousFailed: 0xF3
        case .onionMissingClientAuthorization: 0xF4
        case .onionWrongClientAuthorization: 0xF5
        case .onionAddressInvalid: 0xF6
        case .onionIntroductionTimedOut: 0xF7
        case let .unknown(byte): byte
        }
    }

    /// What the code means, as the end of "the proxy could not connect: …". Tor's own
    /// meanings are given where tor uses a plain RFC 1928 code for something specific
    /// (0x06 is also what tor answers when its SocksTimeout expires).
    public var meaning: String {
        switch self {
        case .generalFailure: "general SOCKS server failure"
        case .notAllowedByRuleset: "the connection is not allowed by the proxy's rules (for tor: its exit or SOCKS policy)"
        case .networkUnreachable: "the network is unreachable"
        case .hostUnreachable: "the host is unreachable (for tor: the name did not resolve)"
        case .connectionRefused: "the destination refused the connection"
        case .ttlExpired: "the connection timed out (TTL expired; tor also answers this when its SocksTimeout passes)"
        case .commandNotSupported: "the proxy does not support the CONNECT command"
        case .addressTypeNotSupported: "the proxy does not support this address type"
        case .onionDescriptorNotFound:
            "the onion service's descriptor was not found: the service is offline or has not published it yet"
        case .onionDescriptorInvalid: "the onion service's descriptor could not be parsed or verified"
        case .onionIntroductionFailed: "every introduction to the onion service failed: the service is probably offline"
        case .onionRendezvousFailed: "the rendezvous with the onion service failed"
        case .onionMissingClientAuthorization: "the onion service requires client authorization, and tor has none for it"
        case .onionWrongClientAuthorization: "the onion service rejected tor's client authorization"
        case .onionAddressInvalid: "the onion address is invalid (bad length, checksum or version)"
        case .onionIntroductionTimedOut: "the introduction to the onion service timed out"
        case .unknown: "the proxy answered a reply code that neither RFC 1928 nor tor defines"
        }
    }

    public var description: String { "\(meaning) (reply 0x\(hex(byte)))" }
}

/// Why a SOCKS5 negotiation failed; each description is one sentence.
public enum SOCKS5Error: Error, Hashable, Sendable, CustomStringConvertible {
    /// The destination cannot be put in a CONNECT request (a name over 255 bytes, an IP
    /// address of the wrong length).
    case invalidDestination(String, reason: String)
    /// A username or password outside RFC 1929's 1 to 255 bytes.
    case invalidCredentials(reason: String)
    /// The proxy answered 0xFF to our greeting: it accepts none of the methods we offered.
    case refusedAllMethods(offered: [UInt8])
    /// The proxy chose a method we did not offer.
    case unofferedMethod(UInt8, offered: [UInt8])
    /// RFC 1929: a non-zero status to our username and password.
    case authenticationRejected(status: UInt8)
    /// The proxy answered the CONNECT request with an error.
    case connectFailed(SOCKS5ReplyCode)
    /// The proxy sent bytes that are not a SOCKS5 answer at this point.
    case malformedReply(String)
    /// The proxy closed the connection before the negotiation was over.
    case closedDuringNegotiation(stage: String)
    /// `receive` after the negotiation failed or finished.
    case notNegotiating

    public var description: String { description(proxy: "the proxy") }

    /// The sentence with the proxy named, e.g. "tor (SOCKS port 127.0.0.1:9050)".
    public func description(proxy: String) -> String {
        func list(_ methods: [UInt8]) -> String { methods.map { "0x" + hex($0) }.joined(separator: ", ") }
        switch self {
        case let .invalidDestination(destination, reason):
            return "cannot ask \(proxy) for \(destination): \(reason)"
        case let .invalidCredentials(reason):
            return "the SOCKS username or password for \(proxy) is invalid: \(reason)"
        case let .refusedAllMethods(offered):
            return "\(proxy) refused all the authentication methods we offered (\(list(offered)))"
        case let .unofferedMethod(method, offered):
            return "\(proxy) chose authentication method 0x\(hex(method)), which we did not offer (we offered \(list(offered)))"
        case let .authenticationRejected(status):
            return "\(proxy) rejected our username and password (status 0x\(hex(status)))"
        case let .connectFailed(code):
            return "\(proxy) could not connect: \(code)"
        case let .malformedReply(reason):
            return "\(proxy) answered something that is not SOCKS5: \(reason)"
        case let .closedDuringNegotiation(stage):
            return "\(proxy) closed the connection while we waited for \(stage)"
        case .notNegotiating:
            return "the SOCKS5 negotiation with \(proxy) is already over"
        }
    }
}

/// Two uppercase hex digits, as the codes are written in RFC 1928 and tor's spec.
fileprivate func hex(_ byte: UInt8) -> String {
    let digits = String(byte, radix: 16, uppercase: true)
    return byte < 0x10 ? "0" + digits : digits
}
