/// BOLT-1 `init` (type 16): the first message on every connection.
///
/// ```
/// [u16:gflen][gflen*byte:globalfeatures][u16:flen][flen*byte:features][init_tlvs:tlvs]
/// ```
public struct InitMessage: Equatable, Sendable {
    /// Legacy global bitmap; BOLT-1 says to OR it into `features` (`combinedFeatures`).
    public var globalFeatures: FeatureVector
    public var features: FeatureVector
    /// TLV 1 `networks`: 32-byte chain hashes. `nil` when absent; `[]` is a present but empty record.
    public var networks: [[UInt8]]?
    /// TLV 3 `remote_addr`: one raw BOLT-7 address descriptor (see `decodedRemoteAddress()`).
    public var remoteAddress: [UInt8]?
    /// Unknown odd TLV records, kept so a re-encoded message equals the received one.
    /// Types must be odd, strictly increasing and other than 1 and 3.
    public var extraTLVs: [TLVRecord]

    public static let networksType: UInt64 = 1
    public static let remoteAddressType: UInt64 = 3
    public static let knownTLVTypes: Set<UInt64> = [networksType, remoteAddressType]
    public static let chainHashLength = 32

    public init(
        globalFeatures: FeatureVector = FeatureVector(),
        features: FeatureVector,
        networks: [[UInt8]]? = nil,
        remoteAddress: [UInt8]? = nil,
        extraTLVs: [TLVRecord] = []
    ) {
        self.globalFeatures = globalFeatures
        self.features = features
        self.networks = networks
        self.remoteAddress = remoteAddress
        self.extraTLVs = extraTLVs
    }

    public init(
        globalFeatures: FeatureVector = FeatureVector(),
        features: FeatureVector,
        networks: [[UInt8]]? = nil,
        remoteAddress: NetworkAddress,
        extraTLVs: [TLVRecord] = []
    ) {
        self.init(
            globalFeatures: globalFeatures, features: features, networks: networks,
            remoteAddress: remoteAddress.encode(), extraTLVs: extraTLVs)
    }

    /// `globalfeatures` OR `features`: the logical feature map BOLT-1 tells receivers to use.
    public var combinedFeatures: FeatureVector { globalFeatures.union(features) }

    /// Validates the peer's combined features (see `FeatureVector.validate(known:)`).
    public func validateFeatures(known: Set<Int>) throws(WireError) {
        do throws(WireError) {
            try combinedFeatures.validate(known: known)
        } catch {
            throw error.inContext("init")
        }
    }

    /// Parses `remoteAddress`; `nil` when the record is absent.
    public func decodedRemoteAddress() throws(WireError) -> NetworkAddress? {
        guard let remoteAddress else { return nil }
        return try NetworkAddress.decode(remoteAddress)
    }

    /// Decodes the payload after the 2-byte type.
    public init(payload reader: inout WireReader) throws(WireError) {
        let globalLength = try reader.readU16(field: "gflen")
        let global = try reader.readSubReader(Int(globalLength), field: "globalfeatures")
        let localLength = try reader.readU16(field: "flen")
        let local = try reader.readSubReader(Int(localLength), field: "features")
        let (stream, valueOffsets) = try TLVStream.decodeWithValueOffsets(
            &reader, knownTypes: InitMessage.knownTLVTypes, context: "init_tlvs")

        var networks: [[UInt8]]?
        var remoteAddress: [UInt8]?
        var extra: [TLVRecord] = []
        for (record, valueOffset) in zip(stream.records, valueOffsets) {
            switch record.type {
            case InitMessage.networksType:
                guard record.value.count % InitMessage.chainHashLength == 0 else {
                    throw WireError(
                        .lengthNotMultiple(of: InitMessage.chainHashLength, actual: record.value.count),
                        offset: valueOffset, context: "init_tlvs.networks")
                }
                var chains: [[UInt8]] = []
                chains.reserveCapacity(record.value.count / InitMessage.chainHashLength)
                var start = 0
                while start < record.value.count {
                    chains.append(Array(record.value[start..<(start + InitMessage.chainHashLength)]))
                    start += InitMessage.chainHashLength
                }
                networks = chains
            case InitMessage.remoteAddressType:
                // BOLT-1: remote_addr MUST be a valid address descriptor. Known descriptor
                // types must be well formed; unknown types are accepted as opaque.
                var addressReader = WireReader(record.value[...], baseOffset: valueOffset)
                do throws(WireError) {
                    _ = try NetworkAddress.decode(&addressReader)
                } catch {
                    throw error.inContext("init_tlvs.remote_addr")
                }
                remoteAddress = record.value
            default:
                extra.append(record)
            }
        }
        self.init(
            globalFeatures: FeatureVector(bytes: global.storage),
            features: FeatureVector(bytes: local.storage),
            networks: networks, remoteAddress: remoteAddress, extraTLVs: extra)
    }

    /// The TLV records in wire order: known ones merged with `extraTLVs` by type.
    private var tlvRecords: [TLVRecord] {
        var records: [TLVRecord] = []
        records.reserveCapacity(extraTLVs.count + 2)
        if let networks {
            var value: [UInt8] = []
            value.reserveCapacity(networks.count * InitMessage.chainHashLength)
            for chain in networks { value.append(contentsOf: chain) }
            records.append(TLVRecord(type: InitMessage.networksType, value: value))
        }
        if let remoteAddress {
            records.append(TLVRecord(type: InitMessage.remoteAddressType, value: remoteAddress))
        }
        if !extraTLVs.isEmpty {
            records.append(contentsOf: extraTLVs)
            // Stable, so a caller's misordered extras keep their relative order and
            // `checkEncodable()` can still point at them.
            records = records.enumerated()
                .sorted { ($0.element.type, $0.offset) < ($1.element.type, $1.offset) }
                .map(\.element)
        }
        return records
    }

    public var payloadLength: Int {
        var length = 4 + globalFeatures.bytes.count + features.bytes.count
        if let networks {
            let valueLength = networks.reduce(0) { $0 + $1.count }
            length += BigSize.encodedLength(InitMessage.networksType)
                + BigSize.encodedLength(UInt64(valueLength)) + valueLength
        }
        if let remoteAddress {
            length += TLVRecord(type: InitMessage.remoteAddressType, value: remoteAddress).encodedLength
        }
        for record in extraTLVs { length += record.encodedLength }
        return length
    }

    /// Writes the payload (without the message type). A feature bitmap over 65535
    /// bytes (only possible through `FeatureVector(bytes:)`) cannot be represented and traps.
    public func encodePayload(into writer: inout WireWriter) {
        func writeBitmap(_ vector: FeatureVector) {
            guard let length = UInt16(exactly: vector.bytes.count) else {
                preconditionFailure("feature bitmap of \(vector.bytes.count) bytes does not fit its u16 length")
            }
            writer.writeU16(length)
            writer.writeBytes(vector.bytes)
        }
        writeBitmap(globalFeatures)
        writeBitmap(features)
        for record in tlvRecords { record.encode(into: &writer.bytes) }
    }

    /// Reports values whose encoding would not decode back to an equal message.
    public func checkEncodable() throws(WireError) {
        for (vector, field) in [(globalFeatures, "globalfeatures"), (features, "features")]
        where vector.bytes.count > FeatureVector.maximumByteCount {
            throw WireError(
                .fieldTooLong(maximum: FeatureVector.maximumByteCount, actual: vector.bytes.count),
                offset: 0, context: "init." + field)
        }
        if let networks {
            for (index, chain) in networks.enumerated() where chain.count != InitMessage.chainHashLength {
                throw WireError(
                    .invalidFieldLength(expected: InitMessage.chainHashLength, actual: chain.count),
                    offset: 0, context: "init.init_tlvs.networks[\(index)]")
            }
        }
        if let remoteAddress {
            do throws(WireError) {
                _ = try NetworkAddress.decode(remoteAddress)
            } catch {
                throw error.inContext("init.init_tlvs.remote_addr")
            }
        }
        for record in extraTLVs where !record.isOdd || InitMessage.knownTLVTypes.contains(record.type) {
            throw WireError(
                .invalidValue("extra TLV type \(record.type) must be odd and not a known init TLV"),
                offset: 0, context: "init.extraTLVs")
        }
        do throws(WireError) {
            try TLVStream(extraTLVs).checkOrdering(context: "extraTLVs")
        } catch {
            throw error.inContext("init")
        }
    }
}
