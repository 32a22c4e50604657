import LNPCrypto
@testable import LNPTransport
import LNPWire
import Testing

/// A fixed node id (the secp256k1 generator point), so failures print stable text.
let nodeHex = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
let torProjectOnion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
let duckDuckGoOnion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion"

@Suite struct PeerAddressTests {
    /// (input, canonical form): parsing the input prints the canonical form, and the
    /// canonical form parses to the same value and prints itself.
    static let peerForms: [(String, String)] = [
        ("\(nodeHex)@127.0.0.1:9735", "\(nodeHex)@127.0.0.1:9735"),
        ("\(nodeHex)@[::1]:9735", "\(nodeHex)@[::1]:9735"),
        ("\(nodeHex)@[2001:DB8:0:0:0:0:0:1]:9735", "\(nodeHex)@[2001:db8::1]:9735"),
        ("\(nodeHex)@[2001:0db8:0000:0001:0001:0001:0001:0001]:1", "\(nodeHex)@[2001:db8:0:1:1:1:1:1]:1"),
        ("\(nodeHex)@[1:0:0:2:0:0:0:3]:65535", "\(nodeHex)@[1:0:0:2::3]:65535"),
        ("\(nodeHex)@[1:0:0:2:2:0:0:3]:9735", "\(nodeHex)@[1::2:2:0:0:3]:9735"),
        ("\(nodeHex)@[::ffff:192.0.2.1]:9735", "\(nodeHex)@[::ffff:192.0.2.1]:9735"),
        ("\(nodeHex)@[::FFFF:c000:0201]:9735", "\(nodeHex)@[::ffff:192.0.2.1]:9735"),
        ("\(nodeHex)@[fe80::]:9735", "\(nodeHex)@[fe80::]:9735"),
        ("\(nodeHex)@Node.Example.COM:9735", "\(nodeHex)@node.example.com:9735"),
        ("\(nodeHex)@localhost:9735", "\(nodeHex)@localhost:9735"),
        ("\(nodeHex)@\(torProjectOnion):9735", "\(nodeHex)@\(torProjectOnion):9735"),
        ("\(nodeHex)@\(duckDuckGoOnion.uppercased()):9735", "\(nodeHex)@\(duckDuckGoOnion):9735"),
        ("\(nodeHex.uppercased())@10.0.0.1:9735", "\(nodeHex)@10.0.0.1:9735"),
        ("tcp://\(nodeHex)@1.2.3.4:9735", "\(nodeHex)@1.2.3.4:9735"),
        ("TCP://\(nodeHex)@1.2.3.4:9735", "\(nodeHex)@1.2.3.4:9735"),
        ("udp://\(nodeHex)@1.2.3.4:9735", "udp://\(nodeHex)@1.2.3.4:9735"),
        ("udp://\(nodeHex)@[::1]:9735", "udp://\(nodeHex)@[::1]:9735"),
        ("serial://\(nodeHex)@/dev/ttyUSB0?baud=115200", "serial://\(nodeHex)@/dev/ttyUSB0?baud=115200"),
        ("serial://\(nodeHex)@/dev/ttyUSB0", "serial://\(nodeHex)@/dev/ttyUSB0?baud=115200"),
        ("serial://\(nodeHex)@/dev/ttyS1?baud=9600", "serial://\(nodeHex)@/dev/ttyS1?baud=9600"),
        ("spool://\(nodeHex)@/path/dir", "spool://\(nodeHex)@/path/dir"),
        ("spool://\(nodeHex)@/media/My USB/lnp@home", "spool://\(nodeHex)@/media/My USB/lnp@home"),
    ]

    @Test(arguments: peerForms)
    func roundTrip(_ input: String, _ canonical: String) throws {
        let address = try PeerAddress(parsing: input)
        #expect(address.description == canonical)
        let reparsed = try PeerAddress(parsing: canonical)
        #expect(reparsed == address)
        #expect(reparsed.description == canonical)
        #expect(PeerAddress(canonical) == address)
        #expect(address.nodeID.hex == nodeHex)
    }

    @Test func parsedValues() throws {
        let tcp = try PeerAddress(parsing: "\(nodeHex)@[2001:db8::1]:9735")
        #expect(tcp.location == .tcp(host: .ipv6([0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]), port: 9735))
        #expect(tcp.linkKind == .stream)
        let onion = try PeerAddress(parsing: "\(nodeHex)@\(torProjectOnion):9735")
        #expect(onion.location == .tcp(host: .onion(String(torProjectOnion.dropLast(6))), port: 9735))
        let udp = try PeerAddress(parsing: "udp://\(nodeHex)@1.2.3.4:1")
        #expect(udp.location == .udp(host: .ipv4([1, 2, 3, 4]), port: 1))
        #expect(udp.linkKind == .frame)
        let serial = try PeerAddress(parsing: "serial://\(nodeHex)@/dev/ttyUSB0?baud=9600")
        #expect(serial.location == .serial(path: "/dev/ttyUSB0", baud: 9600))
        #expect(serial.linkKind == .frame)
        let spool = try PeerAddress(parsing: "spool://\(nodeHex)@/var/spool/lnp")
        #expect(spool.location == .spool(path: "/var/spool/lnp"))
        #expect(spool.linkKind == .storeAndForward)
        #expect(try PeerAddress(parsing: "\(nodeHex)@a.b:1").location == .tcp(host: .dns("a.b"), port: 1))
    }

    static let onionName = String(torProjectOnion.dropLast(6))
    static let flippedOnion: String = {
        // One character changed: still 56 base32 characters, version 3 intact, checksum wrong.
        var characters = Array(onionName)
        characters[3] = characters[3] == "a" ? "b" : "a"
        return String(characters) + ".onion"
    }()
    static let versionFourOnion: String = {
        let key = [UInt8](repeating: 7, count: 32)
        let bytes = key + OnionServiceAddress.checksum(publicKey: key, version: 4) + [4]
        return OnionServiceAddress.base32Encode(bytes) + ".onion"
    }()

    static let malformedPeers: [(String, AddressError)] = [
        ("", .empty),
        ("1.2.3.4:9735", .missingNodeID),
        ("zz" + nodeHex.dropFirst(2) + "@1.2.3.4:9735", .nodeIDNotHex(position: 0)),
        (String(nodeHex.dropLast()) + "g@1.2.3.4:9735", .nodeIDNotHex(position: 65)),
        (String(nodeHex.dropLast(2)) + "@1.2.3.4:9735", .nodeIDLength(64)),
        (nodeHex + "00@1.2.3.4:9735", .nodeIDLength(68)),
        ("@1.2.3.4:9735", .nodeIDLength(0)),
        ("04" + nodeHex.dropFirst(2) + "@1.2.3.4:9735", .nodeIDNotAPublicKey),
        ("02" + String(repeating: "f", count: 64) + "@1.2.3.4:9735", .nodeIDNotAPublicKey),
        ("\(nodeHex)@1.2.3.4", .missingPort(host: "1.2.3.4")),
        ("\(nodeHex)@example.com", .missingPort(host: "example.com")),
        ("\(nodeHex)@[::1]", .missingPort(host: "[::1]")),
        ("\(nodeHex)@", .missingHost),
        ("\(nodeHex)@:9735", .missingHost),
        ("\(nodeHex)@1.2.3.4:0", .portOutOfRange("0", allowed: 1...65535)),
        ("\(nodeHex)@1.2.3.4:65536", .portOutOfRange("65536", allowed: 1...65535)),
        ("\(nodeHex)@1.2.3.4:99999999999999999999", .portOutOfRange("99999999999999999999", allowed: 1...65535)),
        ("\(nodeHex)@1.2.3.4:", .invalidPort("")),
        ("\(nodeHex)@1.2.3.4:http", .invalidPort("http")),
        ("\(nodeHex)@1.2.3.4:09735", .invalidPort("09735")),
        ("\(nodeHex)@1.2.3.4:-1", .invalidPort("-1")),
        ("\(nodeHex)@[::1]9735", .invalidPort("9735")),
        ("\(nodeHex)@256.1.1.1:9735", .invalidIPv4("256.1.1.1")),
        ("\(nodeHex)@1.2.3:9735", .invalidIPv4("1.2.3")),
        ("\(nodeHex)@01.2.3.4:9735", .invalidIPv4("01.2.3.4")),
        ("\(nodeHex)@1..3.4:9735", .invalidIPv4("1..3.4")),
        ("\(nodeHex)@::1:9735", .unbracketedIPv6("::1:9735")),
        ("\(nodeHex)@[::1:9735", .invalidIPv6("::1:9735", reason: "the closing ']' is missing")),
        ("\(nodeHex)@[]:9735", .missingHost),
        ("\(nodeHex)@[1::2::3]:9735", .invalidIPv6("1::2::3", reason: "'::' may appear only once")),
        ("\(nodeHex)@[12345::1]:9735", .invalidIPv6("12345::1", reason: "'12345' is not a group of 1 to 4 hex digits")),
        ("\(nodeHex)@[1:2:3:4:5:6:7]:9735", .invalidIPv6("1:2:3:4:5:6:7", reason: "expected 8 groups, got 7")),
        ("\(nodeHex)@[1:2:3:4:5:6:7:8:9]:9735", .invalidIPv6("1:2:3:4:5:6:7:8:9", reason: "expected 8 groups, got 9")),
        ("\(nodeHex)@[1:2:3:4::5:6:7:8]:9735", .invalidIPv6("1:2:3:4::5:6:7:8", reason: "too many groups around '::'")),
        ("\(nodeHex)@[:1:2:3:4:5:6:7]:9735", .invalidIPv6(":1:2:3:4:5:6:7", reason: "a group between colons is empty")),
        ("\(nodeHex)@[g::1]:9735", .invalidIPv6("g::1", reason: "'g' is not a group of 1 to 4 hex digits")),
        ("\(nodeHex)@[fe80::1%eth0]:9735", .invalidIPv6("fe80::1%eth0", reason: "zone indexes (%...) are not supported")),
        ("\(nodeHex)@[::1.2.3.256]:9735", .invalidIPv6("::1.2.3.256", reason: "'1.2.3.256' is not a valid embedded IPv4 address")),
        ("\(nodeHex)@exa_mple.com:9735",
         .invalidHostName("exa_mple.com", reason: "it contains '_'; only letters, digits, '-' and '.' are allowed")),
        ("\(nodeHex)@-bad.com:9735", .invalidHostName("-bad.com", reason: "the label '-bad' starts or ends with '-'")),
        ("\(nodeHex)@a..b:9735", .invalidHostName("a..b", reason: "it has an empty label (two dots in a row, or a leading dot)")),
        ("\(nodeHex)@example.com.:9735", .invalidHostName("example.com.", reason: "it ends with a dot")),
        ("\(nodeHex)@host.123:9735", .invalidHostName("host.123", reason: "the last label '123' is all digits")),
        ("\(nodeHex)@\(String(repeating: "a", count: 64)).com:9735",
         .invalidHostName("\(String(repeating: "a", count: 64)).com", reason: "the label '\(String(repeating: "a", count: 64))' is longer than 63 characters")),
        ("\(nodeHex)@bücher.de:9735", .invalidHostName("bücher.de", reason: "it contains a non-ASCII character (use Punycode); only letters, digits, '-' and '.' are allowed")),
        ("\(nodeHex)@\(flippedOnion):9735", .onionChecksumMismatch(flippedOnion)),
        ("\(nodeHex)@expyuzz4wqqyqhjn.onion:9735", .onionV2NotSupported("expyuzz4wqqyqhjn.onion")),
        ("\(nodeHex)@abc.onion:9735", .invalidOnion("abc.onion", reason: "the name must be 56 base32 characters, got 3")),
        ("\(nodeHex)@www.\(torProjectOnion):9735",
         .invalidOnion("www.\(torProjectOnion)", reason: "sub-domains of onion services are not supported")),
        ("\(nodeHex)@\(String(repeating: "1", count: 56)).onion:9735",
         .invalidOnion("\(String(repeating: "1", count: 56)).onion", reason: "only the letters a–z and digits 2–7 may appear before .onion")),
        ("\(nodeHex)@\(versionFourOnion):9735", .invalidOnion(versionFourOnion, reason: "version byte is 4, expected 3")),
        ("ftp://\(nodeHex)@1.2.3.4:9735", .unknownScheme("ftp")),
        ("\(nodeHex)@1.2.3.4:9735\n", .controlCharacter(position: 79)),
        ("udp://\(nodeHex)@\(torProjectOnion):9735", .onionNotOverStream(scheme: "udp")),
        ("udp://\(nodeHex)@1.2.3.4:0", .portOutOfRange("0", allowed: 1...65535)),
        ("udp://1.2.3.4:9735", .missingNodeID),
        ("serial://\(nodeHex)@", .missingPath(scheme: "serial")),
        ("serial://\(nodeHex)@?baud=9600", .missingPath(scheme: "serial")),
        ("serial://\(nodeHex)@dev/ttyUSB0", .relativePath("dev/ttyUSB0")),
        ("serial://\(nodeHex)@/dev/ttyUSB0?baud=fast", .invalidBaudRate("fast")),
        ("serial://\(nodeHex)@/dev/ttyUSB0?baud=0", .invalidBaudRate("0")),
        ("serial://\(nodeHex)@/dev/ttyUSB0?baud=", .invalidBaudRate("")),
        ("serial://\(nodeHex)@/dev/ttyUSB0?baud=99999999", .invalidBaudRate("99999999")),
        ("serial://\(nodeHex)@/dev/ttyUSB0?speed=9600", .unknownParameter("speed", scheme: "serial")),
        ("serial://\(nodeHex)@/dev/ttyUSB0?baud=9600&baud=9600", .duplicateParameter("baud")),
        ("serial:///dev/ttyUSB0", .missingNodeID),
        ("spool://\(nodeHex)@", .missingPath(scheme: "spool")),
        ("spool://\(nodeHex)@relative/dir", .relativePath("relative/dir")),
        ("spool://\(nodeHex)@/dir?x=1", .unknownParameter("x", scheme: "spool")),
    ]

    @Test(arguments: malformedPeers)
    func malformed(_ input: String, _ expected: AddressError) {
        #expect(throws: expected) { try PeerAddress(parsing: input) }
        #expect(PeerAddress(input) == nil)
    }

    @Test func everyErrorReadsAsASentence() {
        for (input, expected) in Self.malformedPeers + ListenAddressTests.malformedListens {
            let text = expected.description
            #expect(text.count > 15, "\(input)")
            #expect(!text.contains("AddressError"), "\(input)")
        }
    }
}

@Suite struct ListenAddressTests {
    static let listenForms: [(String, String)] = [
        ("0.0.0.0:9735", "0.0.0.0:9735"),
        ("[::]:9735", "[::]:9735"),
        ("[0:0:0:0:0:0:0:0]:9735", "[::]:9735"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("localhost:9735", "localhost:9735"),
        ("tcp://0.0.0.0:9735", "0.0.0.0:9735"),
        ("udp://0.0.0.0:9735", "udp://0.0.0.0:9735"),
        ("udp://[::1]:0", "udp://[::1]:0"),
        ("serial:///dev/ttyS0?baud=9600", "serial:///dev/ttyS0?baud=9600"),
        ("serial:///dev/ttyS0", "serial:///dev/ttyS0?baud=115200"),
        ("spool:///path", "spool:///path"),
        ("spool:///srv/lnp@box/in", "spool:///srv/lnp@box/in"),
    ]

    @Test(arguments: listenForms)
    func roundTrip(_ input: String, _ canonical: String) throws {
        let address = try ListenAddress(parsing: input)
        #expect(address.description == canonical)
        #expect(try ListenAddress(parsing: canonical) == address)
        #expect(ListenAddress(canonical)?.description == canonical)
    }

    @Test func linkKinds() throws {
        #expect(try ListenAddress(parsing: "0.0.0.0:1").linkKind == .stream)
        #expect(try ListenAddress(parsing: "udp://0.0.0.0:1").linkKind == .frame)
        #expect(try ListenAddress(parsing: "serial:///dev/ttyS0").linkKind == .frame)
        #expect(try ListenAddress(parsing: "spool:///x").linkKind == .storeAndForward)
        #expect(try ListenAddress(parsing: "127.0.0.1:0").location == .tcp(host: .ipv4([127, 0, 0, 1]), port: 0))
    }

    static let malformedListens: [(String, AddressError)] = [
        ("", .empty),
        ("\(nodeHex)@0.0.0.0:9735", .unexpectedNodeID),
        ("udp://\(nodeHex)@0.0.0.0:9735", .unexpectedNodeID),
        ("spool://\(nodeHex)@/x", .unexpectedNodeID),
        ("0.0.0.0", .missingPort(host: "0.0.0.0")),
        (":9735", .missingHost),
        ("0.0.0.0:65536", .portOutOfRange("65536", allowed: 0...65535)),
        ("0.0.0.0:00", .invalidPort("00")),
        ("::1:9735", .unbracketedIPv6("::1:9735")),
        ("[::g]:9735", .invalidIPv6("::g", reason: "'g' is not a group of 1 to 4 hex digits")),
        ("\(torProjectOnion):9735", .onionListen(torProjectOnion)),
        ("http://0.0.0.0:80", .unknownScheme("http")),
        ("serial://", .missingPath(scheme: "serial")),
        ("serial://dev/ttyS0", .relativePath("dev/ttyS0")),
        ("serial:///dev/ttyS0?baud=12x", .invalidBaudRate("12x")),
        ("spool://", .missingPath(scheme: "spool")),
    ]

    @Test(arguments: malformedListens)
    func malformed(_ input: String, _ expected: AddressError) {
        #expect(throws: expected) { try ListenAddress(parsing: input) }
    }
}

@Suite struct OnionAndHostTests {
    @Test func sha3VectorsFromNIST() {
        #expect(Hex.encode(OnionServiceAddress.sha3_256(Array("abc".utf8)))
            == "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532")
        #expect(Hex.encode(OnionServiceAddress.sha3_256([]))
            == "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a")
    }

    @Test func onionNameFromKeyValidates() throws {
        for seed in 0..<20 {
            let key = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &* 7) }
            let name = OnionServiceAddress.name(forPublicKey: key)
            #expect(name.count == 56)
            #expect(try Host(parsing: name + ".onion") == .onion(name))
            #expect(OnionServiceAddress.decode(name).map { Array($0[0..<32]) } == key)
        }
    }

    @Test func base32RoundTrip() {
        let bytes = (0..<35).map { UInt8($0 * 7) }
        #expect(OnionServiceAddress.base32Decode(OnionServiceAddress.base32Encode(bytes)) == bytes)
        #expect(OnionServiceAddress.base32Decode("abc1") == nil)
    }

    @Test func globalRoutability() throws {
        let privateHosts = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.0.1",
                            "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
                            "::1", "::", "fe80::1", "fd00::1", "ff02::1", "2001:db8::1", "::ffff:10.0.0.1"]
        for text in privateHosts {
            #expect(try !Host(parsing: text).isGloballyRoutable, "\(text)")
        }
        let publicHosts = ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2a01:4f8::1", "::ffff:8.8.4.4", "example.com", torProjectOnion]
        for text in publicHosts {
            #expect(try Host(parsing: text).isGloballyRoutable, "\(text)")
        }
    }

    @Test func networkAddressConversion() throws {
        let cases: [(String, NetworkAddress)] = [
            ("\(nodeHex)@1.2.3.4:9735", .ipv4(address: [1, 2, 3, 4], port: 9735)),
            ("\(nodeHex)@[2001:db8::1]:9736",
             .ipv6(address: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1], port: 9736)),
            ("\(nodeHex)@node.example.com:1", .dnsHostname("node.example.com", port: 1)),
        ]
        for (text, expected) in cases {
            let location = try PeerAddress(parsing: text).location
            #expect(location.networkAddress == expected)
            #expect(Location(expected) == location)
            #expect(try NetworkAddress.decode(expected.encode()) == expected)
        }
        let onion = try PeerAddress(parsing: "\(nodeHex)@\(torProjectOnion):9735").location
        guard case let .torV3(bytes, port)? = onion.networkAddress else {
            Issue.record("an onion location must map to a Tor v3 descriptor")
            return
        }
        #expect(bytes.count == 35 && bytes[34] == 3 && port == 9735)
        #expect(NetworkAddress.torV3(address: bytes, port: port).description == "\(torProjectOnion):9735")
        #expect(Location(.torV3(address: bytes, port: port)) == onion)

        var corrupted = bytes
        corrupted[0] ^= 1
        #expect(Location(.torV3(address: corrupted, port: 1)) == nil)
        #expect(Location(.torV2(data: [UInt8](repeating: 0, count: 12))) == nil)
        #expect(Location(.dnsHostname("bad_name", port: 1)) == nil)
        #expect(Location.udp(host: .ipv4([1, 2, 3, 4]), port: 1).networkAddress == nil)
        #expect(Location.spool(path: "/x").networkAddress == nil)
    }
}
