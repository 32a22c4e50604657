import LNPTransport
import LNPTransportTor
import Testing

/// Byte-exact checks of the SOCKS5 client state machine, every answer also fed in every
/// chunk size down to one byte.
@Suite struct SOCKS5ClientNegotiationTests {
    static let onion = OnionServiceAddress.name(forPublicKey: Array(repeating: 7, count: 32))
    static let credentials = try! SOCKS5ClientNegotiation.Credentials(username: "lnp-abc", password: "p4ss")
    static let successIPv4: [UInt8] = [5, 0, 0, 1, 10, 0, 0, 1, 0x26, 0x07]
    static let successIPv6: [UInt8] = [5, 0, 0, 4] + Array(1...16) + [0x01, 0xbb]
    static let sessionBytes: [UInt8] = Array(0..<50)  // e.g. the start of BOLT-8 act two

    /// Feeds each answer in `chunk`-byte pieces; returns what the client wrote after the
    /// greeting and the leftover, or throws the negotiation's error.
    static func run(_ negotiation: inout SOCKS5ClientNegotiation, answers: [[UInt8]], chunk: Int)
        throws(SOCKS5Error) -> (writes: [[UInt8]], leftover: [UInt8]?) {
        var writes: [[UInt8]] = []
        for answer in answers {
            var index = 0
            repeat {
                let piece = answer[index..<min(index + chunk, answer.count)]
                index += chunk
                switch try negotiation.receive(piece) {
                case .awaitMoreBytes:
                    break
                case let .write(bytes):
                    #expect(index >= answer.count, "a write before the whole answer arrived")
                    writes.append(bytes)
                case let .connected(leftover):
                    // Bytes after the reply that were not yet fed belong to the session too.
                    return (writes, leftover + answer[min(index, answer.count)...])
                }
            } while index < answer.count
        }
        return (writes, nil)
    }

    @Test func noAuthenticationConnectByOnionNameIsByteExactInEveryChunking() throws {
        let name = Array((Self.onion + ".onion").utf8)
        #expect(name.count == 62)
        for chunk in 1...(Self.successIPv4.count + Self.sessionBytes.count) {
            var negotiation = try SOCKS5ClientNegotiation(destination: .init(.onion(Self.onion)), port: 9735, credentials: nil)
            #expect(negotiation.greeting == [5, 1, 0])
            let result = try Self.run(&negotiation, answers: [[5, 0], Self.successIPv4 + Self.sessionBytes], chunk: chunk)
            #expect(result.writes == [[5, 1, 0, 3, 62] + name + [0x26, 0x07]])
            #expect(result.leftover == Self.sessionBytes, "chunk \(chunk)")
            #expect(negotiation.isConnected)
        }
    }

    @Test func usernamePasswordThenConnectByIPv6ReplyIsByteExactInEveryChunking() throws {
        let destination: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1]
        let reply = Self.successIPv6 + Self.sessionBytes
        for chunk in 1...reply.count {
            var negotiation = try SOCKS5ClientNegotiation(destination: .ipv6(destination), port: 443, credentials: Self.credentials)
            #expect(negotiation.greeting == [5, 1, 2])
            let result = try Self.run(&negotiation, answers: [[5, 2], [1, 0], reply], chunk: chunk)
            #expect(result.writes == [
                [1, 7] + Array("lnp-abc".utf8) + [4] + Array("p4ss".utf8),
                [5, 1, 0, 4] + destination + [0x01, 0xbb],
            ])
            #expect(result.leftover == Self.sessionBytes, "chunk \(chunk)")
        }
    }

    @Test func connectByIPv4AndDNSName() throws {
        var byIP = try SOCKS5ClientNegotiation(destination: .init(.ipv4([192, 0, 2, 7])), port: 1, credentials: nil)
        let ipRequest = try byIP.receive([5, 0])
        #expect(ipRequest == .write([5, 1, 0, 1, 192, 0, 2, 7, 0, 1]))
        var byName = try SOCKS5ClientNegotiation(destination: .init(.dns("node.example")), port: 0xfffe, credentials: nil)
        let nameRequest = try byName.receive([5, 0])
        #expect(nameRequest == .write([5, 1, 0, 3, 12] + Array("node.example".utf8) + [0xff, 0xfe]))
    }

    /// A reply with a 255-byte bound name is the longest there is; its length decides
    /// where the session's bytes begin, whatever the chunking.
    @Test func longestReplyWithNameBoundAddressAndNothingAfter() throws {
        #expect(SOCKS5ClientNegotiation.maximumReplyLength == 262)
        let reply: [UInt8] = [5, 0, 0, 3, 255] + Array(repeating: UInt8(ascii: "a"), count: 255) + [0, 80]
        #expect(reply.count == 262)
        for chunk in [1, 2, 5, 100, 261, 262, 300] {
            var negotiation = try SOCKS5ClientNegotiation(destination: .domainName("x.example"), port: 1, credentials: nil)
            let result = try Self.run(&negotiation, answers: [[5, 0], reply + Self.sessionBytes], chunk: chunk)
            #expect(result.leftover == Self.sessionBytes)
            var exact = try SOCKS5ClientNegotiation(destination: .domainName("x.example"), port: 1, credentials: nil)
            #expect(try Self.run(&exact, answers: [[5, 0], reply], chunk: chunk).leftover == [])
        }
    }

    static let extendedCodes: [(UInt8, SOCKS5ReplyCode, String)] = [
        (0x01, .generalFailure, "general SOCKS server failure"),
        (0x02, .notAllowedByRuleset, "not allowed"),
        (0x03, .networkUnreachable, "network is unreachable"),
        (0x04, .hostUnreachable, "host is unreachable"),
        (0x05, .connectionRefused, "refused the connection"),
        (0x06, .ttlExpired, "timed out"),
        (0x07, .commandNotSupported, "CONNECT"),
        (0x08, .addressTypeNotSupported, "address type"),
        (0xF0, .onionDescriptorNotFound, "descriptor was not found"),
        (0xF1, .onionDescriptorInvalid, "descriptor could not be parsed"),
        (0xF2, .onionIntroductionFailed, "introduction to the onion service failed"),
        (0xF3, .onionRendezvousFailed, "rendezvous"),
        (0xF4, .onionMissingClientAuthorization, "requires client authorization"),
        (0xF5, .onionWrongClientAuthorization, "rejected tor's client authorization"),
        (0xF6, .onionAddressInvalid, "onion address is invalid"),
        (0xF7, .onionIntroductionTimedOut, "introduction to the onion service timed out"),
    ]

    /// Every code fails at its second byte, in every chunking of the full reply; the
    /// description names the code.
    @Test(arguments: 0..<16) func everyReplyCodeIsATypedErrorWithItsSentence(index: Int) throws {
        let (byte, code, phrase) = Self.extendedCodes[index]
        #expect(SOCKS5ReplyCode(byte: byte) == code && code.byte == byte)
        for chunk in 1...10 {
            var negotiation = try SOCKS5ClientNegotiation(destination: .domainName("a.onion"), port: 1, credentials: Self.credentials)
            #expect(throws: SOCKS5Error.connectFailed(code)) {
                try Self.run(&negotiation, answers: [[5, 2], [1, 0], [5, byte, 0, 1, 0, 0, 0, 0, 0, 0]], chunk: chunk)
            }
            #expect(throws: SOCKS5Error.notNegotiating) { try negotiation.receive([0]) }
        }
        let sentence = SOCKS5Error.connectFailed(code).description(proxy: "tor's SOCKS port 127.0.0.1:9050")
        #expect(sentence.hasPrefix("tor's SOCKS port 127.0.0.1:9050 could not connect: "))
        #expect(sentence.contains(phrase), "\(sentence)")
        let digits = String(byte, radix: 16, uppercase: true)
        #expect(sentence.hasSuffix("(reply 0x\(byte < 0x10 ? "0" : "")\(digits))"), "\(sentence)")
    }

    @Test func unknownCodesAreTypedToo() throws {
        #expect(SOCKS5ReplyCode(byte: 0x00) == nil)
        for byte: UInt8 in [0x09, 0x7F, 0xEF, 0xF8, 0xFF] {
            var negotiation = try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: nil)
            _ = try negotiation.receive([5, 0])
            #expect(throws: SOCKS5Error.connectFailed(.unknown(byte))) { try negotiation.receive([5, byte]) }
            #expect(SOCKS5ReplyCode.unknown(byte).description.contains("neither RFC 1928 nor tor defines"))
        }
    }

    @Test func methodSelectionFailures() throws {
        func fresh(_ credentials: SOCKS5ClientNegotiation.Credentials?) throws -> SOCKS5ClientNegotiation {
            try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: credentials)
        }
        var refused = try fresh(Self.credentials)
        #expect(throws: SOCKS5Error.refusedAllMethods(offered: [2])) { try refused.receive([5, 0xFF]) }
        #expect(SOCKS5Error.refusedAllMethods(offered: [2]).description
            == "the proxy refused all the authentication methods we offered (0x02)")
        // A proxy that skips authentication when we asked for it would merge circuits.
        var skipped = try fresh(Self.credentials)
        #expect(throws: SOCKS5Error.unofferedMethod(0, offered: [2])) { try skipped.receive([5, 0]) }
        var unasked = try fresh(nil)
        #expect(throws: SOCKS5Error.unofferedMethod(2, offered: [0])) { try unasked.receive([5, 2]) }
        var socks4 = try fresh(nil)
        #expect(throws: SOCKS5Error.malformedReply("its method selection starts with version 4, not 5")) { try socks4.receive([4]) }
        var chatty = try fresh(nil)
        #expect(throws: SOCKS5Error.malformedReply("it sent 1 unexpected byte(s) after its method selection")) {
            try chatty.receive([5, 0, 0])
        }
    }

    @Test func authenticationFailures() throws {
        var rejected = try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: Self.credentials)
        _ = try rejected.receive([5, 2])
        let half = try rejected.receive([1])
        #expect(half == .awaitMoreBytes)
        #expect(throws: SOCKS5Error.authenticationRejected(status: 1)) { try rejected.receive([1]) }
        #expect(SOCKS5Error.authenticationRejected(status: 1).description
            == "the proxy rejected our username and password (status 0x01)")
        var wrongVersion = try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: Self.credentials)
        _ = try wrongVersion.receive([5, 2])
        #expect(throws: SOCKS5Error.malformedReply("its authentication status starts with version 5, not 1")) {
            try wrongVersion.receive([5, 0])
        }
    }

    @Test func malformedRepliesFailAsSoonAsTheBadByteArrives() throws {
        let cases: [([UInt8], String)] = [
            ([4], "its reply starts with version 4, not 5"),
            ([0x48, 0x54, 0x54, 0x50], "its reply starts with version 72, not 5"),  // "HTTP"
            ([5, 0, 1], "its reply has 1 in the reserved byte, which must be 0"),
            ([5, 0, 0, 2], "its reply has address type 2; only 1 (IPv4), 3 (name) and 4 (IPv6) exist"),
        ]
        for (reply, reason) in cases {
            var negotiation = try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: nil)
            _ = try negotiation.receive([5, 0])
            #expect(throws: SOCKS5Error.malformedReply(reason)) { try negotiation.receive(reply) }
        }
        #expect(SOCKS5Error.malformedReply("x").description(proxy: "tor's SOCKS port 127.0.0.1:1")
            == "tor's SOCKS port 127.0.0.1:1 answered something that is not SOCKS5: x")
    }

    @Test func endOfStreamNamesWhatWasAwaited() throws {
        var atGreeting = try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: Self.credentials)
        let closedAtGreeting = atGreeting.receiveEndOfStream()
        #expect(closedAtGreeting == .closedDuringNegotiation(stage: "its choice of authentication method"))
        var atAuthentication = try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: Self.credentials)
        _ = try atAuthentication.receive([5, 2])
        let closedAtAuthentication = atAuthentication.receiveEndOfStream()
        #expect(closedAtAuthentication == .closedDuringNegotiation(stage: "its answer to our username and password"))
        var atReply = try SOCKS5ClientNegotiation(destination: .domainName("a.example"), port: 1, credentials: nil)
        _ = try atReply.receive([5, 0])
        _ = try atReply.receive([5, 0, 0, 1, 127])
        let closedAtReply = atReply.receiveEndOfStream()
        #expect(closedAtReply.description == "the proxy closed the connection while we waited for its reply to our CONNECT request")
        #expect(throws: SOCKS5Error.notNegotiating) { try atReply.receive([0]) }
    }

    @Test func destinationsAndCredentialsOutsideTheirLimitsAreRefused() {
        #expect(throws: SOCKS5Error.self) {
            try SOCKS5ClientNegotiation(destination: .domainName(String(repeating: "a", count: 256)), port: 1, credentials: nil)
        }
        #expect(throws: SOCKS5Error.self) { try SOCKS5ClientNegotiation(destination: .domainName(""), port: 1, credentials: nil) }
        #expect(throws: SOCKS5Error.self) { try SOCKS5ClientNegotiation(destination: .ipv4([1, 2, 3]), port: 1, credentials: nil) }
        #expect(throws: SOCKS5Error.self) { try SOCKS5ClientNegotiation(destination: .ipv6([1]), port: 1, credentials: nil) }
        #expect(throws: SOCKS5Error.invalidCredentials(reason: "the username has 0 bytes; RFC 1929 allows 1 to 255")) {
            try SOCKS5ClientNegotiation.Credentials(username: "", password: "x")
        }
        #expect(throws: SOCKS5Error.invalidCredentials(reason: "the password has 256 bytes; RFC 1929 allows 1 to 255")) {
            try SOCKS5ClientNegotiation.Credentials(username: "x", password: String(repeating: "p", count: 256))
        }
        #expect(throws: Never.self) {
            try SOCKS5ClientNegotiation(destination: .domainName(String(repeating: "a", count: 255)), port: 1, credentials: nil)
        }
    }
}
