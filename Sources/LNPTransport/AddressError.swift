/// Every way a peer or listen address can be malformed. `description` is a sentence
/// meant for the person who typed the address.
public enum AddressError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case controlCharacter(position: Int)
    case unknownScheme(String)
    /// A peer address without `NODEID@`.
    case missingNodeID
    /// A listen address with `NODEID@`.
    case unexpectedNodeID
    case nodeIDLength(Int)
    case nodeIDNotHex(position: Int)
    case nodeIDNotAPublicKey
    case missingHost
    case missingPort(host: String)
    case invalidPort(String)
    case portOutOfRange(String, allowed: ClosedRange<Int>)
    case invalidIPv4(String)
    case invalidIPv6(String, reason: String)
    case unbracketedIPv6(String)
    case invalidHostName(String, reason: String)
    case onionV2NotSupported(String)
    case invalidOnion(String, reason: String)
    case onionChecksumMismatch(String)
    /// Onion services carry TCP only.
    case onionNotOverStream(scheme: String)
    /// Listening on an onion service is the Tor transport's job, configured there.
    case onionListen(String)
    case missingPath(scheme: String)
    case relativePath(String)
    case invalidBaudRate(String)
    case unknownParameter(String, scheme: String)
    case duplicateParameter(String)

    public var description: String {
        switch self {
        case .empty:
            return "the address is empty"
        case let .controlCharacter(position):
            return "the address contains a control character at position \(position)"
        case let .unknownScheme(scheme):
            return "unknown address scheme '\(scheme)://' (expected tcp://, udp://, serial:// or spool://, or no scheme for TCP)"
        case .missingNodeID:
            return "a peer address needs the node id first: NODEID@HOST:PORT (or SCHEME://NODEID@LOCATION)"
        case .unexpectedNodeID:
            return "a listen address has no node id: write HOST:PORT (or SCHEME://LOCATION) without 'NODEID@'"
        case let .nodeIDLength(count):
            return "the node id must be 66 hex characters (a 33-byte compressed public key), got \(count)"
        case let .nodeIDNotHex(position):
            return "the node id has a character that is not hexadecimal at position \(position)"
        case .nodeIDNotAPublicKey:
            return "the node id is not a valid secp256k1 public key (it must start with 02 or 03 and lie on the curve)"
        case .missingHost:
            return "the address has no host before ':PORT'"
        case let .missingPort(host):
            return "the address '\(host)' has no port: write HOST:PORT"
        case let .invalidPort(text):
            return "the port '\(text)' is not a decimal number without leading zeros"
        case let .portOutOfRange(text, allowed):
            return "the port \(text) is out of range (allowed: \(allowed.lowerBound)–\(allowed.upperBound))"
        case let .invalidIPv4(text):
            return "'\(text)' is not a valid IPv4 address (four decimal numbers 0–255 without leading zeros)"
        case let .invalidIPv6(text, reason):
            return "'[\(text)]' is not a valid IPv6 address: \(reason)"
        case let .unbracketedIPv6(text):
            return "'\(text)' looks like an IPv6 address: put it in brackets, as in [\(text)]:PORT"
        case let .invalidHostName(text, reason):
            return "'\(text)' is not a valid host name: \(reason)"
        case let .onionV2NotSupported(text):
            return "'\(text)' is a Tor v2 onion address; v2 onion services no longer exist, use the 56-character v3 address"
        case let .invalidOnion(text, reason):
            return "'\(text)' is not a valid v3 onion address: \(reason)"
        case let .onionChecksumMismatch(text):
            return "'\(text)' is not a valid v3 onion address: its checksum does not match (a typo?)"
        case let .onionNotOverStream(scheme):
            return "an onion address can only be reached over TCP through Tor, not over \(scheme)://"
        case let .onionListen(text):
            return "cannot listen on the onion address '\(text)': onion services are set up by the Tor transport"
        case let .missingPath(scheme):
            return "a \(scheme):// address needs an absolute path, as in \(scheme == "serial" ? "serial:///dev/ttyUSB0?baud=115200" : "spool:///media/usb/lnp")"
        case let .relativePath(path):
            return "the path '\(path)' must be absolute (start with '/')"
        case let .invalidBaudRate(text):
            return "the baud rate '\(text)' is not a number from \(Location.baudRates.lowerBound) to \(Location.baudRates.upperBound)"
        case let .unknownParameter(name, scheme):
            return "unknown parameter '\(name)' for a \(scheme):// address" + (scheme == "serial" ? " (only 'baud' is defined)" : " (it takes none)")
        case let .duplicateParameter(name):
            return "the parameter '\(name)' appears more than once"
        }
    }
}
