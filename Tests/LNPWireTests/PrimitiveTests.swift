import Testing

@testable import LNPWire

@Suite("WireReader / WireWriter primitives")
struct PrimitiveTests {
    @Test func fixedWidthIntegersAreBigEndian() throws {
        var writer = WireWriter(capacity: 15)
        writer.writeU8(0x01)
        writer.writeU16(0x0203)
        writer.writeU32(0x0405_0607)
        writer.writeU64(0x0809_0a0b_0c0d_0e0f)
        #expect(writer.bytes == Array(1...15))

        var reader = WireReader(writer.bytes)
        #expect(try reader.readU8() == 0x01)
        #expect(try reader.readU16() == 0x0203)
        #expect(try reader.readU32() == 0x0405_0607)
        #expect(reader.offset == 7)
        #expect(try reader.readU64() == 0x0809_0a0b_0c0d_0e0f)
        #expect(reader.isAtEnd && reader.remaining == 0)
    }

    @Test func truncatedReadReportsNeedAvailabilityOffsetAndField() {
        var reader = WireReader([0xaa, 0xbb, 0xcc])
        _ = try? reader.readU8()
        #expect(throws: WireError(.truncated(needed: 4, available: 2), offset: 1, context: "feerate")) {
            try reader.readU32(field: "feerate")
        }
        // A failed read consumes nothing.
        #expect(reader.offset == 1)
        #expect(throws: WireError(.truncated(needed: 3, available: 2), offset: 1, context: "bytes")) {
            try reader.readBytes(3)
        }
        #expect(throws: WireError.self) { try reader.readBytes(-1) }
        #expect(reader.offset == 1)
    }

    @Test func skipIfNextBytesEqualConsumesOnlyAnExactMatch() throws {
        var reader = WireReader([1, 2, 3, 4, 5])
        var results: [Bool] = []
        for candidate: [UInt8] in [[1, 3], [1, 2, 3, 4, 5, 6], [1, 2], [], [3, 4, 5], [0]] {
            results.append(reader.skip(ifNextBytesEqual: candidate))
        }
        #expect(results == [false, false, true, true, true, false])
        #expect(reader.isAtEnd)
    }

    @Test func subReaderKeepsAbsoluteOffsets() throws {
        var reader = WireReader([0, 1, 2, 3, 4, 5])
        try reader.skip(2)
        var sub = try reader.readSubReader(3)
        #expect(reader.offset == 5)
        #expect(sub.offset == 2 && sub.remaining == 3)
        _ = try sub.readU16()
        #expect(throws: WireError(.truncated(needed: 2, available: 1), offset: 4, context: "u16")) {
            try sub.readU16()
        }
        #expect(throws: WireError(.trailingBytes(1), offset: 4, context: "end")) { try sub.expectEnd() }
        #expect(sub.peekU8() == 4)
    }

    @Test func sliceAndRawBufferReaders() throws {
        let bytes: [UInt8] = [9, 9, 0x12, 0x34]
        var sliceReader = WireReader(bytes[2...])
        #expect(sliceReader.offset == 0)
        #expect(try sliceReader.readU16() == 0x1234)
        var rawReader = bytes.withUnsafeBytes { WireReader(copying: $0) }
        #expect(try rawReader.readU32() == 0x0909_1234)
    }

    @Test func truncatedIntegers() throws {
        let cases: [(UInt64, [UInt8])] = [
            (0, []), (1, [1]), (0xff, [0xff]), (0x100, [1, 0]), (0x1_0000, [1, 0, 0]),
            (0x0102_0304, [1, 2, 3, 4]), (.max, [UInt8](repeating: 0xff, count: 8)),
        ]
        for (value, encoding) in cases {
            var writer = WireWriter()
            writer.writeTruncatedU64(value)
            #expect(writer.bytes == encoding, "tu64 \(value)")
            #expect(WireWriter.truncatedLength(value) == encoding.count)
            var reader = WireReader(encoding)
            #expect(try reader.readTruncatedU64(length: encoding.count) == value)
        }
        var writer = WireWriter()
        writer.writeTruncatedU16(0x00ff)
        writer.writeTruncatedU32(0x0001_0000)
        #expect(writer.bytes == [0xff, 0x01, 0x00, 0x00])

        var tooLong = WireReader([1, 2, 3])
        #expect(throws: WireError(.fieldTooLong(maximum: 2, actual: 3), offset: 0, context: "tu16")) {
            try tooLong.readTruncatedU16(length: 3)
        }
        var leadingZero = WireReader([0, 1])
        #expect(throws: WireError(.nonMinimalTruncatedInteger, offset: 0, context: "tu32")) {
            try leadingZero.readTruncatedU32(length: 2)
        }
        var zeroByte = WireReader([0])
        #expect(throws: WireError(.nonMinimalTruncatedInteger, offset: 0, context: "tu64")) {
            try zeroByte.readTruncatedU64(length: 1)
        }
        var short = WireReader([1])
        #expect(throws: WireError(.truncated(needed: 2, available: 1), offset: 0, context: "tu64")) {
            try short.readTruncatedU64(length: 2)
        }
    }

    /// BOLT-1 Appendix D values (smallest width that holds each value).
    @Test func signedIntegersMatchAppendixD() throws {
        let vectors: [(Int64, String)] = [
            (0, "00"), (42, "2a"), (-42, "d6"), (127, "7f"), (-128, "80"), (128, "0080"),
            (-129, "ff7f"), (15000, "3a98"), (-15000, "c568"), (32767, "7fff"), (-32768, "8000"),
            (32768, "00008000"), (-32769, "ffff7fff"), (21_000_000, "01406f40"), (-21_000_000, "febf90c0"),
            (2_147_483_647, "7fffffff"), (-2_147_483_648, "80000000"), (2_147_483_648, "0000000080000000"),
            (-2_147_483_649, "ffffffff7fffffff"), (500_000_000_000, "000000746a528800"),
            (-500_000_000_000, "ffffff8b95ad7800"), (.max, "7fffffffffffffff"), (.min, "8000000000000000"),
        ]
        for (value, hex) in vectors {
            let bytes = try [UInt8](hex: hex)
            var writer = WireWriter()
            writer.writeSignedMinimal(value)
            #expect(writer.bytes == bytes, "\(value)")
            var reader = WireReader(bytes)
            let decoded: Int64
            switch bytes.count {
            case 1: decoded = Int64(try reader.readS8())
            case 2: decoded = Int64(try reader.readS16())
            case 4: decoded = Int64(try reader.readS32())
            default: decoded = try reader.readS64()
            }
            #expect(decoded == value)
        }
    }

    @Test func bigSizeLengthsAndDecodeErrors() throws {
        #expect(BigSize.encodedLength(0xfc) == 1)
        #expect(BigSize.encodedLength(0xfd) == 3)
        #expect(BigSize.encodedLength(0x1_0000) == 5)
        #expect(BigSize.encodedLength(0x1_0000_0000) == 9)
        var nonCanonical = WireReader([0x00, 0xfe, 0x00, 0x00, 0xff, 0xff])
        _ = try nonCanonical.readU8()
        #expect(throws: WireError(.nonCanonicalBigSize, offset: 1, context: "length")) {
            try nonCanonical.readBigSize(field: "length")
        }
    }

    @Test func errorDescriptionsAreReadable() {
        let error = WireError(.truncated(needed: 2, available: 1), offset: 7, context: "init.flen")
        #expect(error.description == "truncated: needed 2 byte(s), only 1 available at byte offset 7 in init.flen")
        let dependency = WireError(.featureDependencyMissing(feature: 16, requires: 14), offset: 0, context: "features")
        #expect(dependency.description.contains("basic_mpp"))
        #expect(dependency.description.contains("payment_secret"))
        #expect(error.inContext("outer").context == "outer.init.flen")
    }
}
