@testable import LNPWire

/// Random but always encodable values, for round-trip properties.
extension RandomNumberGenerator {
    mutating func featureVector() -> FeatureVector {
        let count = Int.random(in: 0...8, using: &self)
        let highestBit = Bool.random(using: &self) ? 64 : 2048
        return FeatureVector(bits: (0..<count).map { _ in Int.random(in: 0..<highestBit, using: &self) })
    }

    /// Strictly increasing TLV types; `oddOnly` for extensions with no known types.
    mutating func tlvTypes(maxCount: Int, oddOnly: Bool, excluding excluded: Set<UInt64> = []) -> [UInt64] {
        let count = Int.random(in: 0...maxCount, using: &self)
        var types = Set<UInt64>()
        for _ in 0..<count {
            var type = interestingUInt64()
            if oddOnly { type |= 1 }
            if !excluded.contains(type) { types.insert(type) }
        }
        return types.sorted()
    }

    mutating func tlvStream(maxCount: Int = 5, oddOnly: Bool) -> TLVStream {
        let types = tlvTypes(maxCount: maxCount, oddOnly: oddOnly)
        return TLVStream(types.map { TLVRecord(type: $0, value: byteString(maxLength: 300)) })
    }

    /// An extension stream: usually empty, as on the real network.
    mutating func extensionStream() -> TLVStream {
        Int.random(in: 0..<3, using: &self) == 0 ? tlvStream(maxCount: 4, oddOnly: true) : TLVStream()
    }

    mutating func networkAddress() -> NetworkAddress {
        let port = UInt16.random(in: 0...UInt16.max, using: &self)
        switch Int.random(in: 0..<6, using: &self) {
        case 0: return .ipv4(address: bytes(4), port: port)
        case 1: return .ipv6(address: bytes(16), port: port)
        case 2: return .torV2(data: bytes(12))
        case 3: return .torV3(address: bytes(35), port: port)
        case 4:
            let length = Int.random(in: 1...255, using: &self)
            let hostname = String(decoding: (0..<length).map { _ in UInt8.random(in: 0x21...0x7e, using: &self) }, as: UTF8.self)
            return .dnsHostname(hostname, port: port)
        default:
            return .unknown(type: UInt8.random(in: 6...255, using: &self), data: byteString(maxLength: 60))
        }
    }

    mutating func initMessage() -> InitMessage {
        let networks: [[UInt8]]? = Bool.random(using: &self)
            ? nil : (0..<Int.random(in: 0...3, using: &self)).map { _ in bytes(32) }
        let remoteAddress = Bool.random(using: &self) ? nil : networkAddress().encode()
        let extraTypes = tlvTypes(maxCount: 3, oddOnly: true, excluding: InitMessage.knownTLVTypes)
        return InitMessage(
            globalFeatures: Int.random(in: 0..<4, using: &self) == 0 ? featureVector() : FeatureVector(),
            features: featureVector(),
            networks: networks,
            remoteAddress: remoteAddress,
            extraTLVs: extraTypes.map { TLVRecord(type: $0, value: byteString(maxLength: 100)) })
    }

    static var messageKindCount: Int { 6 }

    mutating func message() -> Message {
        message(kind: Int.random(in: 0..<Self.messageKindCount, using: &self))
    }

    /// 0 init, 1 error, 2 warning, 3 ping, 4 pong, 5 unknown odd.
    mutating func message(kind: Int) -> Message {
        switch kind {
        case 0:
            return .`init`(initMessage())
        case 1:
            return .error(ErrorMessage(channelID: bytes(32), data: byteString(maxLength: 400), tlvs: extensionStream()))
        case 2:
            return .warning(WarningMessage(channelID: bytes(32), data: byteString(maxLength: 400), tlvs: extensionStream()))
        case 3:
            return .ping(Ping(
                numPongBytes: UInt16.random(in: 0...UInt16.max, using: &self),
                ignored: byteString(maxLength: 400), tlvs: extensionStream()))
        case 4:
            return .pong(Pong(ignored: byteString(maxLength: 400), tlvs: extensionStream()))
        default:
            var type: UInt16
            repeat {
                type = UInt16.random(in: 0...UInt16.max, using: &self) | 1
            } while MessageType.known.contains(type)
            return .unknownOdd(type: type, payload: byteString(maxLength: 400))
        }
    }
}
