@testable import LNPWire

/// The two TLV namespaces of BOLT-1 Appendix B, implemented on top of
/// `TLVStream` the way a message decoder would: the stream layer enforces the
/// generic rules, then each known record must have exactly its encoding.
enum TLVTestNamespace: String, CaseIterable, CustomStringConvertible {
    case n1, n2

    var description: String { rawValue }

    /// Decoded known records in the fixture's shape: record name → field → value.
    typealias DecodedValues = [String: [String: FixtureScalar]]

    /// Type → (record name, field names) as the spec declares them.
    var recordNames: [UInt64: (name: String, fields: [String])] {
        switch self {
        case .n1:
            return [
                1: ("tlv1", ["amount_msat"]),
                2: ("tlv2", ["scid"]),
                3: ("tlv3", ["node_id", "amount_msat_1", "amount_msat_2"]),
                254: ("tlv4", ["cltv_delta"]),
            ]
        case .n2:
            return [
                0: ("tlv1", ["amount_msat"]),
                11: ("tlv2", ["cltv_expiry"]),
            ]
        }
    }

    var knownTypes: Set<UInt64> { Set(recordNames.keys) }

    func decode(_ bytes: [UInt8]) throws(WireError) -> DecodedValues {
        var reader = WireReader(bytes)
        let (stream, valueOffsets) = try TLVStream.decodeWithValueOffsets(
            &reader, knownTypes: knownTypes, context: rawValue)
        var values: DecodedValues = [:]
        for (record, valueOffset) in zip(stream.records, valueOffsets) {
            guard let (name, _) = recordNames[record.type] else { continue }
            var valueReader = WireReader(record.value[...], baseOffset: valueOffset)
            do throws(WireError) {
                values[name] = try decodeRecord(type: record.type, &valueReader)
            } catch {
                throw error.inContext("\(rawValue).\(name)")
            }
        }
        return values
    }

    private func decodeRecord(type: UInt64, _ reader: inout WireReader) throws(WireError) -> [String: FixtureScalar] {
        switch (self, type) {
        case (.n1, 1), (.n2, 0):
            return ["amount_msat": .number(try reader.readTruncatedU64(length: reader.remaining, field: "amount_msat"))]
        case (.n1, 2):
            try Self.expectLength(reader, 8)
            let scid = try reader.readU64(field: "scid")
            let text = "\(scid >> 40)x\((scid >> 16) & 0xff_ffff)x\(scid & 0xffff)"
            return ["scid": .text(text)]
        case (.n1, 3):
            try Self.expectLength(reader, 33 + 8 + 8)
            let pointOffset = reader.offset
            let point = try reader.readBytes(33, field: "node_id")
            guard Secp256k1PointCheck.isValidCompressedPoint(point) else {
                throw WireError(.invalidValue("node_id is not a valid point"), offset: pointOffset, context: "node_id")
            }
            return [
                "node_id": .text(point.hex),
                "amount_msat_1": .number(try reader.readU64(field: "amount_msat_1")),
                "amount_msat_2": .number(try reader.readU64(field: "amount_msat_2")),
            ]
        case (.n1, 254):
            try Self.expectLength(reader, 2)
            return ["cltv_delta": .number(UInt64(try reader.readU16(field: "cltv_delta")))]
        case (.n2, 11):
            return ["cltv_expiry": .number(UInt64(try reader.readTruncatedU32(length: reader.remaining, field: "cltv_expiry")))]
        default:
            return [:]
        }
    }

    /// BOLT-1: a known record whose length differs from its encoding fails the stream.
    private static func expectLength(_ reader: WireReader, _ expected: Int) throws(WireError) {
        guard reader.remaining == expected else {
            throw WireError(.invalidFieldLength(expected: expected, actual: reader.remaining), offset: reader.offset, context: "value")
        }
    }

    /// Namespaces a fixture's `namespace` field applies to.
    static func applicable(to fixtureNamespace: String) -> [TLVTestNamespace]? {
        switch fixtureNamespace {
        case "any", "either": return TLVTestNamespace.allCases
        case "n1": return [.n1]
        case "n2": return [.n2]
        default: return nil
        }
    }
}

/// Maps the spec's failure reasons to the error kind our decoder must produce,
/// so a vector cannot pass by failing for an unrelated reason.
enum TLVFailureReason {
    static func accepts(reason: String, kind: WireError.Kind) -> Bool? {
        let rules: [(String, (WireError.Kind) -> Bool)] = [
            ("type truncated", isTruncated),
            ("missing length", isTruncated),
            ("length truncated", isTruncated),
            ("not minimally encoded type", { $0 == .nonCanonicalBigSize }),
            ("not minimally encoded length", { $0 == .nonCanonicalBigSize }),
            ("missing value", isLengthExceeded),
            ("value truncated", isLengthExceeded),
            ("unknown even type", isUnknownEven),
            ("unknown even field", isUnknownEven),
            ("greater than encoding length", { kind in
                if case .invalidFieldLength = kind { return true }
                if case .fieldTooLong = kind { return true }
                return false
            }),
            ("less than encoding length", { kind in
                if case .invalidFieldLength = kind { return true }
                return false
            }),
            ("is not minimal", { $0 == .nonMinimalTruncatedInteger }),
            ("not a valid point", { kind in
                if case .invalidValue = kind { return true }
                return false
            }),
            ("invalid ordering", isNotIncreasing),
            ("duplicate TLV type", isNotIncreasing),
        ]
        for (phrase, predicate) in rules where reason.contains(phrase) {
            return predicate(kind)
        }
        return nil
    }

    private static func isTruncated(_ kind: WireError.Kind) -> Bool {
        if case .truncated = kind { return true }
        return false
    }

    private static func isLengthExceeded(_ kind: WireError.Kind) -> Bool {
        if case .tlvLengthExceedsStream = kind { return true }
        return false
    }

    private static func isUnknownEven(_ kind: WireError.Kind) -> Bool {
        if case .unknownEvenTLVType = kind { return true }
        return false
    }

    private static func isNotIncreasing(_ kind: WireError.Kind) -> Bool {
        if case .tlvTypesNotIncreasing = kind { return true }
        return false
    }
}
