import LNPTransport
import LNPTransportTor

/// `socks`: the proxy's side of a SOCKS5 CONNECT, fed to `SOCKS5ClientNegotiation` in
/// pieces. Layout: `[options][4 chunk-pattern bytes][proxy bytes]`. Options: bit 0 offers
/// username/password, bits 1-2 pick the destination (onion name, IPv4, IPv6, DNS name),
/// bit 3 delivers the two-byte answers (method selection, RFC 1929 status) as exact pieces,
/// as a well-behaved proxy does, so the fuzzer reaches the CONNECT reply more often; the
/// rest is cut by the pattern.
///
/// Properties checked, against an independent reading of RFC 1928/1929:
/// - every outcome (await, write, connected, error) is the one the bytes so far call for,
///   and errors are the typed case of the first check that fails (`connectFailed` carries
///   the proxy's code byte);
/// - the writes are exactly the RFC 1929 request and the CONNECT request for the destination;
/// - buffering is bounded: while it awaits more bytes it holds less than one answer (under
///   2 bytes, or under `maximumReplyLength` = 262 for the reply), so what it has been fed
///   since the last step is at most 262 bytes plus the leftover it hands back;
/// - after `.connected` the leftover is exactly the bytes fed after the reply;
/// - after `.connected` or an error every call throws `.notNegotiating`, and end of stream
///   mid-negotiation reports the stage.
public enum SOCKSTarget {
    static let credentials: SOCKS5ClientNegotiation.Credentials = fixture {
        guard let credentials = try? SOCKS5ClientNegotiation.Credentials(username: "isolation-7", password: "x") else {
            fatalError("fixed SOCKS credentials rejected")
        }
        return credentials
    }

    static let onion = String(repeating: "a", count: 56)

    public static func prepare() { _ = credentials }

    enum Stage { case method, authentication, reply, done }

    /// What the bytes gathered for the current answer call for.
    enum Expected: Equatable {
        case more
        case answer(Int)
        case failure(SOCKS5Error)
    }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        let options = input.byte()
        let pattern = input.take(4)
        let proxyBytes = input.rest()
        let useCredentials = options & 1 != 0
        let (destination, encodedDestination): (SOCKS5ClientNegotiation.Destination, [UInt8]) =
            switch (options >> 1) & 3 {
            case 0: (.domainName(onion + ".onion"), [3, 62] + Array((onion + ".onion").utf8))
            case 1: (.ipv4([127, 0, 0, 1]), [1, 127, 0, 0, 1])
            case 2: (.ipv6([UInt8](repeating: 0, count: 15) + [1]), [4] + [UInt8](repeating: 0, count: 15) + [1])
            default: (.domainName("node.example"), [3, 12] + Array("node.example".utf8))
            }
        let port: UInt16 = 9735
        let connectRequest: [UInt8] = [5, 1, 0] + encodedDestination + [0x26, 0x07]
        let authenticationRequest: [UInt8] = [1, 11] + Array("isolation-7".utf8) + [1] + Array("x".utf8)

        var negotiation: SOCKS5ClientNegotiation
        do {
            negotiation = try SOCKS5ClientNegotiation(
                destination: destination, port: port, credentials: useCredentials ? credentials : nil)
        } catch {
            fuzzFailure("a valid destination was refused: \(error)")
        }
        fuzzCheck(negotiation.greeting == [5, 1, useCredentials ? 2 : 0], "greeting \(negotiation.greeting)")

        // Pieces: with option bit 3 the first answers go whole, the rest by the pattern.
        var pieces: [ArraySlice<UInt8>] = []
        var start = 0
        if options & 8 != 0 {
            for _ in 0..<(useCredentials ? 2 : 1) where start < proxyBytes.count {
                let end = min(start + 2, proxyBytes.count)
                pieces.append(proxyBytes[start..<end])
                start = end
            }
        }
        pieces += chunks(of: Array(proxyBytes[start...]), pattern: pattern)

        var stage = Stage.method
        var gathered: [UInt8] = []
        for piece in pieces {
            guard stage != .done else { break }
            gathered += piece
            let expected = expectation(stage, gathered, useCredentials: useCredentials)
            let action: SOCKS5ClientNegotiation.Action
            do {
                action = try negotiation.receive(piece)
            } catch {
                guard case let .failure(expectedError) = expected else {
                    fuzzFailure("\(stage) answer \(gathered.hex) failed with \(error), expected \(expected)")
                }
                fuzzCheck(sameCase(error, expectedError), "\(stage) answer \(gathered.hex) failed with \(error), expected \(expectedError)")
                fuzzCheck(!error.description.isEmpty, "empty error description")
                expectOver(&negotiation)
                return
            }
            switch action {
            case .awaitMoreBytes:
                fuzzCheck(expected == .more, "\(stage) answer \(gathered.hex): awaits more bytes, expected \(expected)")
                let bound = stage == .reply ? SOCKS5ClientNegotiation.maximumReplyLength : 2
                fuzzCheck(gathered.count < bound, "awaits more bytes holding \(gathered.count) (bound \(bound))")
            case let .write(bytes):
                fuzzCheck(expected == .answer(2), "\(stage) answer \(gathered.hex): wrote, expected \(expected)")
                if stage == .method, useCredentials {
                    fuzzCheck(bytes == authenticationRequest, "RFC 1929 request \(bytes.hex)")
                    stage = .authentication
                } else {
                    fuzzCheck(bytes == connectRequest, "CONNECT request \(bytes.hex), expected \(connectRequest.hex)")
                    stage = .reply
                }
                gathered = []
            case let .connected(leftover):
                guard stage == .reply, case let .answer(length) = expected else {
                    fuzzFailure("\(stage) answer \(gathered.hex): connected, expected \(expected)")
                }
                fuzzCheck(length <= SOCKS5ClientNegotiation.maximumReplyLength, "reply longer than the maximum")
                fuzzCheck(leftover == Array(gathered[length...]), "leftover \(leftover.hex) of \(gathered.hex) (reply \(length))")
                fuzzCheck(gathered.count <= SOCKS5ClientNegotiation.maximumReplyLength + leftover.count, "held too much")
                fuzzCheck(negotiation.isConnected, "connected but isConnected is false")
                stage = .done
                expectOver(&negotiation)
                return
            }
        }
        // The proxy stopped sending in the middle of the negotiation.
        fuzzCheck(!negotiation.isConnected, "isConnected without .connected")
        let error = negotiation.receiveEndOfStream()
        guard case .closedDuringNegotiation = error else { fuzzFailure("end of stream gave \(error)") }
        expectOver(&negotiation)
    }

    /// RFC 1928/1929 read independently: what `gathered` (the bytes of the current answer
    /// so far) calls for at `stage`, checking fields in the order they arrive.
    static func expectation(_ stage: Stage, _ gathered: [UInt8], useCredentials: Bool) -> Expected {
        let malformed = Expected.failure(.malformedReply(""))
        switch stage {
        case .method, .authentication:
            guard let first = gathered.first else { return .more }
            guard first == (stage == .method ? 5 : 1) else { return malformed }
            guard gathered.count >= 2 else { return .more }
            guard gathered.count == 2 else { return malformed }
            let value = gathered[1]
            if stage == .authentication {
                return value == 0 ? .answer(2) : .failure(.authenticationRejected(status: value))
            }
            let offered: UInt8 = useCredentials ? 2 : 0
            if value == 0xFF { return .failure(.refusedAllMethods(offered: [offered])) }
            return value == offered ? .answer(2) : .failure(.unofferedMethod(value, offered: [offered]))
        case .reply:
            guard gathered.count >= 1 else { return .more }
            guard gathered[0] == 5 else { return malformed }
            guard gathered.count >= 2 else { return .more }
            if gathered[1] != 0 {
                guard let code = SOCKS5ReplyCode(byte: gathered[1]), code.byte == gathered[1] else {
                    fuzzFailure("reply code \(gathered[1]) does not round-trip")
                }
                return .failure(.connectFailed(code))
            }
            guard gathered.count >= 3 else { return .more }
            guard gathered[2] == 0 else { return malformed }
            guard gathered.count >= 4 else { return .more }
            let length: Int
            switch gathered[3] {
            case 1: length = 10
            case 4: length = 22
            case 3:
                guard gathered.count >= 5 else { return .more }
                length = 7 + Int(gathered[4])
            default: return malformed
            }
            return gathered.count >= length ? .answer(length) : .more
        case .done:
            fuzzFailure("expectation asked after the end")
        }
    }

    /// Same case; a malformed reply's prose is not compared, only that it is a sentence.
    static func sameCase(_ error: SOCKS5Error, _ expected: SOCKS5Error) -> Bool {
        if case let .malformedReply(reason) = error, case .malformedReply = expected { return !reason.isEmpty }
        return error == expected
    }

    static func expectOver(_ negotiation: inout SOCKS5ClientNegotiation) {
        for bytes in [[UInt8](), [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]] {
            do {
                _ = try negotiation.receive(bytes)
                fuzzFailure("receive after the negotiation ended did not throw")
            } catch {
                fuzzCheck(error == .notNegotiating, "receive after the end threw \(error)")
            }
        }
    }
}
