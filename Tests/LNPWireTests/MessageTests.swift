import Testing

@testable import LNPWire

@Suite("BOLT-1 messages")
struct MessageTests {
    static let bitcoinChainHash = try! [UInt8](hex: "6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000")

    @Test func messageTypeNumbers() {
        #expect(MessageType.`init` == 16)
        #expect(MessageType.error == 17)
        #expect(MessageType.warning == 1)
        #expect(MessageType.ping == 18)
        #expect(MessageType.pong == 19)
        #expect(Message.ping(Ping(numPongBytes: 0)).type == 18)
        #expect(Message.unknownOdd(type: 32769, payload: []).type == 32769)
    }

    @Test func initWithNetworksAndRemoteAddress() throws {
        let address = NetworkAddress.ipv4(address: [203, 0, 113, 7], port: 9735)
        let message = InitMessage(
            globalFeatures: FeatureVector(bits: [13]),
            features: FeatureVector(bits: [1, 17, 15, 181]),
            networks: [Self.bitcoinChainHash],
            remoteAddress: address,
            extraTLVs: [TLVRecord(type: 5, value: [1, 2]), TLVRecord(type: 0x1_0001, value: [])])
        let bytes = Message.`init`(message).encode()
        let expected = try [UInt8](hex: [
            "0010",
            "0002", "2000",  // globalfeatures: bit 13
            "0017", "20" + String(repeating: "00", count: 19) + "028002",  // bits 181, 17, 15, 1
            "0120", Self.bitcoinChainHash.hex,  // networks
            "0307", "01cb007107", "2607",  // remote_addr 203.0.113.7:9735
            "050201" + "02",  // extra odd record 5
            "fe00010001", "00",  // extra odd record 65537
        ].joined())
        #expect(bytes == expected)
        #expect(Message.`init`(message).encodedLength == bytes.count)
        let decoded = try Message.decode(bytes)
        #expect(decoded == .`init`(message))
        #expect(try message.decodedRemoteAddress() == address)
        #expect(address.description == "203.0.113.7:9735")
    }

    @Test func emptyNetworksRecordIsDistinctFromAbsent() throws {
        let present = InitMessage(features: FeatureVector(), networks: [])
        let bytes = Message.`init`(present).encode()
        #expect(bytes == [0x00, 0x10, 0, 0, 0, 0, 0x01, 0x00])
        #expect(try Message.decode(bytes) == .`init`(present))
    }

    @Test func initRejectsMalformedKnownRecords() throws {
        // networks of 31 bytes
        let shortChain = try [UInt8](hex: "001000000000011f" + String(repeating: "00", count: 31))
        #expect(throws: WireError(.lengthNotMultiple(of: 32, actual: 31), offset: 8, context: "init.init_tlvs.networks")) {
            try Message.decode(shortChain)
        }
        // remote_addr: an IPv4 descriptor with only 5 of its 6 bytes
        let shortIPv4Exact = try [UInt8](hex: "001000000000030601010203040a")
        do throws(WireError) {
            _ = try Message.decode(shortIPv4Exact)
            Issue.record("short IPv4 accepted")
        } catch {
            #expect(error.context == "init.init_tlvs.remote_addr.address_descriptor.port")
            #expect(error.kind == .truncated(needed: 2, available: 1))
            #expect(error.offset == 13)
        }
        // remote_addr: an IPv4 descriptor with a trailing byte
        let longIPv4 = try [UInt8](hex: "0010000000000308010102030426070a")
        #expect(throws: WireError(.trailingBytes(1), offset: 15, context: "init.init_tlvs.remote_addr.address_descriptor.data")) {
            try Message.decode(longIPv4)
        }
        // remote_addr: empty
        #expect(throws: WireError.self) { try Message.decode(try [UInt8](hex: "0010000000000300")) }
        // remote_addr: non-ASCII hostname
        #expect(throws: WireError(
            .invalidValue("non-ASCII hostname byte"), offset: 10,
            context: "init.init_tlvs.remote_addr.address_descriptor.hostname")
        ) {
            try Message.decode(try [UInt8](hex: "0010000000000305" + "0501e9" + "2607"))
        }
    }

    @Test func initKeepsUnknownAddressTypesOpaque() throws {
        let bytes = try [UInt8](hex: "00100000000003040901020a")
        guard case let .`init`(message) = try Message.decode(bytes) else {
            Issue.record("not an init")
            return
        }
        #expect(try message.decodedRemoteAddress() == .unknown(type: 9, data: [1, 2, 0x0a]))
        #expect(Message.`init`(message).encode() == bytes)
    }

    @Test func networkAddressForms() throws {
        let addresses: [NetworkAddress] = [
            .ipv4(address: [127, 0, 0, 1], port: 1),
            .ipv6(address: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1], port: 9735),
            .torV2(data: [UInt8](repeating: 7, count: 12)),
            .torV3(address: [UInt8](repeating: 0xff, count: 35), port: 9735),
            .dnsHostname("node.example.com", port: 9735),
            .unknown(type: 200, data: [1, 2, 3]),
        ]
        for address in addresses {
            try address.checkEncodable()
            let bytes = address.encode()
            #expect(bytes.count == address.encodedLength)
            #expect(bytes.first == address.typeCode)
            #expect(try NetworkAddress.decode(bytes) == address)
        }
        #expect(addresses[1].description == "[2001:db8:0:0:0:0:0:1]:9735")
        #expect(addresses[3].description.hasSuffix(".onion:9735"))
        #expect(addresses[3].description.count == 56 + ".onion:9735".count)
        #expect(throws: WireError.self) { try NetworkAddress.ipv4(address: [1, 2, 3], port: 1).checkEncodable() }
        #expect(throws: WireError.self) { try NetworkAddress.dnsHostname("", port: 1).checkEncodable() }
        #expect(throws: WireError.self) { try NetworkAddress.unknown(type: 1, data: []).checkEncodable() }
    }

    @Test func errorAndWarning() throws {
        let channel = [UInt8](repeating: 0xab, count: 32)
        let error = ErrorMessage(channelID: channel, data: Array("bad sig".utf8))
        let bytes = Message.error(error).encode()
        #expect(bytes == [0, 17] + channel + [0, 7] + Array("bad sig".utf8))
        #expect(try Message.decode(bytes) == .error(error))
        #expect(!error.isForAllChannels)

        let warning = WarningMessage(allChannels: "slow down")
        #expect(warning.isForAllChannels)
        let warningBytes = Message.warning(warning).encode()
        #expect(warningBytes.prefix(2) == [0, 1])
        #expect(try Message.decode(warningBytes) == .warning(warning))

        // data is length-prefixed, so a long tail of TLVs is the extension, not data.
        let extended = WarningMessage(channelID: channel, data: [], tlvs: TLVStream([TLVRecord(type: 1, value: [9])]))
        let extendedBytes = Message.warning(extended).encode()
        #expect(extendedBytes.suffix(3) == [1, 1, 9])
        #expect(try Message.decode(extendedBytes) == .warning(extended))
        #expect(throws: WireError(.unknownEvenTLVType(2), offset: 36, context: "warning.tlvs.type")) {
            try Message.decode([0, 1] + channel + [0, 0] + [2, 0])
        }
        #expect(throws: WireError(.truncated(needed: 32, available: 31), offset: 2, context: "error.channel_id")) {
            try Message.decode([0, 17] + [UInt8](repeating: 0, count: 31))
        }
    }

    @Test func printableDataEscapesNonPrintableBytes() {
        let error = ErrorMessage(channelID: [UInt8](repeating: 0, count: 32), data: Array("ok ~".utf8) + [0x0a, 0x00, 0xff, 0x7f])
        #expect(error.printableData == "ok ~\\x0a\\x00\\xff\\x7f")
    }

    @Test func pingPongRules() throws {
        #expect(Ping(numPongBytes: 0).expectsPong)
        #expect(Ping(numPongBytes: 65531).expectsPong)
        #expect(!Ping(numPongBytes: 65532).expectsPong)
        #expect(!Ping(numPongBytes: .max).expectsPong)
        #expect(Ping(numPongBytes: 65532).reply == nil)
        let ping = Ping(numPongBytes: 4, ignored: [0, 0, 0])
        let reply = try #require(ping.reply)
        #expect(reply.ignored == [0, 0, 0, 0])
        #expect(reply.answers(ping))
        #expect(!Pong(ignored: [0]).answers(ping))

        let pingBytes = Message.ping(ping).encode()
        #expect(pingBytes == [0, 18, 0, 4, 0, 3, 0, 0, 0])
        #expect(try Message.decode(pingBytes) == .ping(ping))
        // A ping that must not be answered still decodes; ignoring it is the caller's job.
        #expect(try Message.decode([0, 18, 0xff, 0xfc, 0, 0]) == .ping(Ping(numPongBytes: 65532)))
        let pongBytes = Message.pong(reply).encode()
        #expect(pongBytes == [0, 19, 0, 4, 0, 0, 0, 0])
        #expect(try Message.decode(pongBytes) == .pong(reply))
        #expect(throws: WireError(.truncated(needed: 4, available: 3), offset: 4, context: "pong.ignored")) {
            try Message.decode([0, 19, 0, 4, 0, 0, 0])
        }
    }

    @Test func unknownTypes() throws {
        #expect(try Message.decode([0x80, 0x01, 1, 2, 3]) == .unknownOdd(type: 32769, payload: [1, 2, 3]))
        #expect(try Message.decode([0, 9]) == .unknownOdd(type: 9, payload: []))
        #expect(throws: WireError(.unknownEvenMessageType(32768), offset: 0, context: "type")) {
            try Message.decode([0x80, 0x00, 1])
        }
        #expect(throws: WireError(.unknownEvenMessageType(32), offset: 0, context: "type")) {
            try Message.decode([0, 32])
        }
        #expect(throws: WireError(.messageTooShort, offset: 0, context: "type")) { try Message.decode([0x10]) }
        #expect(throws: WireError(.messageTooShort, offset: 0, context: "type")) { try Message.decode([]) }
        #expect(Message.unknownOdd(type: 32769, payload: [1]).encode() == [0x80, 0x01, 1])
        #expect(throws: WireError.self) { try Message.unknownOdd(type: 17, payload: []).checkEncodable() }
        #expect(throws: WireError.self) { try Message.unknownOdd(type: 32768, payload: []).checkEncodable() }
    }

    @Test func decodeFromSliceUsesSliceRelativeOffsets() throws {
        let framed: [UInt8] = [0xee, 0xee, 0, 18, 0, 1, 0, 5]
        #expect(throws: WireError(.truncated(needed: 5, available: 0), offset: 6, context: "ping.ignored")) {
            try Message.decode(framed[2...])
        }
    }

    @Test func decodeFromRawBuffer() throws {
        let bytes = Message.ping(Ping(numPongBytes: 3, ignored: [0, 0])).encode()
        let decoded = try bytes.withUnsafeBytes { buffer throws(WireError) in try Message.decode(copying: buffer) }
        #expect(decoded == .ping(Ping(numPongBytes: 3, ignored: [0, 0])))
    }

    @Test func checkEncodableCatchesUnrepresentableValues() {
        #expect(throws: WireError.self) {
            try Message.error(ErrorMessage(channelID: [1], data: [])).checkEncodable()
        }
        #expect(throws: WireError.self) {
            try Message.pong(Pong(ignored: [UInt8](repeating: 0, count: 65536))).checkEncodable()
        }
        #expect(throws: WireError.self) {
            try Message.ping(Ping(numPongBytes: 1, tlvs: TLVStream([TLVRecord(type: 2, value: [])]))).checkEncodable()
        }
        #expect(throws: WireError.self) {
            try Message.ping(Ping(numPongBytes: 1, tlvs: TLVStream([TLVRecord(type: 5, value: []), TLVRecord(type: 3, value: [])]))).checkEncodable()
        }
        #expect(throws: WireError.self) {
            try Message.`init`(InitMessage(features: FeatureVector(), networks: [[1, 2]])).checkEncodable()
        }
        #expect(throws: WireError.self) {
            try Message.`init`(InitMessage(features: FeatureVector(), extraTLVs: [TLVRecord(type: 3, value: [])])).checkEncodable()
        }
        #expect(throws: WireError.self) {
            try Message.`init`(InitMessage(features: FeatureVector(), extraTLVs: [TLVRecord(type: 4, value: [])])).checkEncodable()
        }
        #expect(throws: WireError.self) {
            try Message.`init`(InitMessage(features: FeatureVector(), remoteAddress: [1, 2])).checkEncodable()
        }
        let oversized = FeatureVector(bytes: [1] + [UInt8](repeating: 0, count: 65535))
        #expect(throws: WireError(.fieldTooLong(maximum: 65535, actual: 65536), offset: 0, context: "init.features")) {
            try Message.`init`(InitMessage(features: oversized)).checkEncodable()
        }
    }

    @Test func tlvStreamSubscriptKeepsOrder() {
        var stream = TLVStream()
        stream[9] = [9]
        stream[1] = [1]
        stream[5] = [5]
        stream[5] = [55]
        #expect(stream.records.map(\.type) == [1, 5, 9])
        #expect(stream[5] == [55])
        #expect(stream[7] == nil)
        stream[1] = nil
        stream[7] = nil
        #expect(stream.records == [TLVRecord(type: 5, value: [55]), TLVRecord(type: 9, value: [9])])
        #expect(throws: Never.self) { try stream.checkOrdering() }
        #expect(throws: WireError(.tlvTypesNotIncreasing(previous: 9, current: 9), offset: 6, context: "tlv.type")) {
            try TLVStream(stream.records + [TLVRecord(type: 9, value: [])]).checkOrdering()
        }
    }

    @Test func tlvStreamErrorsCarryOffsetsAndContext() {
        // type 1 len 1 value 2a, then type 1 again
        #expect(throws: WireError(.tlvTypesNotIncreasing(previous: 1, current: 1), offset: 3, context: "tlv.type")) {
            try TLVStream.decode([1, 1, 0x2a, 1, 0], knownTypes: [])
        }
        #expect(throws: WireError(.tlvLengthExceedsStream(length: 5, remaining: 1), offset: 2, context: "tlv.value")) {
            try TLVStream.decode([1, 5, 0], knownTypes: [])
        }
        #expect(throws: WireError(.unknownEvenTLVType(0x1_0000), offset: 0, context: "tlv.type")) {
            try TLVStream.decode([0xfe, 0, 1, 0, 0, 0], knownTypes: [])
        }
        #expect(throws: Never.self) { try TLVStream.decode([0xfe, 0, 1, 0, 0, 0], knownTypes: [0x1_0000]) }
    }
}
