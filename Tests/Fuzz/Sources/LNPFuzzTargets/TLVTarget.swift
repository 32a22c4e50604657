import LNPCrypto
import LNPWire

/// `tlv`: the whole input is one BOLT-1 `tlv_stream`, decoded under several sets of
/// known types.
///
/// Properties checked:
/// - a decoded stream re-encodes to exactly the input bytes (BOLT-1 readers keep unknown
///   odd records so signed extensions survive), with `encodedLength` equal to its size,
///   strictly increasing types, and even types only when known;
/// - knowing more types never turns a success into a failure, nor changes the records;
///   a stream that decodes with no known types decodes identically under every set;
/// - errors point inside the input;
/// - a leading BigSize that decodes re-encodes to the bytes it was read from;
/// - the records of the spec's test namespaces (n1, n2) that decode as their field types
///   (tu64, tu32, u16, point) re-encode to their value bytes.
public enum TLVTarget {
    /// The spec's test namespaces n1 and n2 (BOLT-1 Appendix B), `init`'s, and one with
    /// large types so 3-, 5- and 9-byte BigSize types can be known.
    static let knownTypeSets: [Set<UInt64>] = [
        [],
        [1, 2, 3, 254],
        [0, 11],
        InitMessage.knownTLVTypes,
        [0, 2, 252, 254, 0xfffe, 0x1_0000, 0xffff_fffe, 0x1_0000_0000, .max - 1],
    ]

    public static func prepare() {}

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        let input = Array(buffer)
        checkBigSize(input)

        var results: [TLVStream?] = []
        for known in knownTypeSets {
            results.append(decode(input, known: known))
        }
        for (index, known) in knownTypeSets.enumerated() {
            guard let stream = results[index] else { continue }
            for (otherIndex, other) in knownTypeSets.enumerated() where known.isSubset(of: other) {
                fuzzCheck(
                    results[otherIndex] == stream,
                    "stream \(input.hex) decodes with known types \(known.sorted()) but not identically with \(other.sorted())")
            }
        }
        if let stream = results[1] { checkNamespaceOne(stream) }
        if let stream = results[2] { checkNamespaceTwo(stream) }
    }

    static func decode(_ input: [UInt8], known: Set<UInt64>) -> TLVStream? {
        let stream: TLVStream
        do {
            stream = try TLVStream.decode(input, knownTypes: known, context: "fuzz")
        } catch {
            fuzzCheck(
                (0...input.count).contains(error.offset),
                "error offset \(error.offset) outside the \(input.count)-byte stream: \(error)")
            fuzzCheck(error.context.hasPrefix("fuzz"), "error context \(error.context) lost its outer context")
            _ = error.description
            return nil
        }
        let encoded = stream.encode()
        fuzzCheck(encoded == input, "re-encoding \(input.hex) gave \(encoded.hex)")
        fuzzCheck(stream.encodedLength == input.count, "encodedLength \(stream.encodedLength) for \(input.count) bytes")
        var encodedInto: [UInt8] = [0xaa]
        stream.encode(into: &encodedInto)
        fuzzCheck(encodedInto == [0xaa] + input, "encode(into:) does not append the same bytes")
        do {
            try stream.checkOrdering()
        } catch {
            fuzzFailure("decoded stream \(input.hex) fails checkOrdering: \(error)")
        }
        for record in stream.records {
            fuzzCheck(record.isOdd || known.contains(record.type), "unknown even type \(record.type) accepted")
            fuzzCheck(stream[record.type] == record.value, "subscript disagrees with records for type \(record.type)")
        }
        // Rebuilding through the subscript setter (in reverse, so every insert shifts) keeps order.
        var rebuilt = TLVStream()
        for record in stream.records.reversed() { rebuilt[record.type] = record.value }
        fuzzCheck(rebuilt == stream, "subscript setter does not rebuild \(input.hex)")
        if let first = stream.records.first {
            rebuilt[first.type] = nil
            fuzzCheck(rebuilt.records == Array(stream.records.dropFirst()), "removing type \(first.type) went wrong")
        }
        // The same stream read from the middle of a larger buffer (non-zero slice indices).
        let framed = [0x00, 0xff] + input + [0x01]
        var reader = WireReader(framed[2..<(2 + input.count)])
        do {
            let again = try TLVStream.decode(&reader, knownTypes: known)
            fuzzCheck(again == stream, "decoding from a slice gives a different stream")
            fuzzCheck(reader.isAtEnd, "decoding from a slice left bytes unread")
        } catch {
            fuzzFailure("stream \(input.hex) decodes from an array but not from a slice: \(error)")
        }
        return stream
    }

    static func checkBigSize(_ input: [UInt8]) {
        var reader = WireReader(input)
        guard let value = try? BigSize.decode(&reader) else { return }
        let consumed = Array(input[..<reader.offset])
        fuzzCheck(BigSize.encode(value) == consumed, "BigSize \(value) read from \(consumed.hex) re-encodes differently")
        fuzzCheck(BigSize.encodedLength(value) == consumed.count, "BigSize.encodedLength(\(value)) wrong")
    }

    /// n1: 1 = tu64, 2 = short_channel_id (u64), 3 = point ‖ u64 ‖ u64, 254 = u16.
    static func checkNamespaceOne(_ stream: TLVStream) {
        if let value = stream[1] { checkTruncated(value, maximumLength: 8) }
        if let value = stream[2], value.count == 8 {
            var reader = WireReader(value)
            var writer = WireWriter()
            writer.writeU64((try? reader.readU64()) ?? 0)
            fuzzCheck(writer.bytes == value, "u64 round trip of \(value.hex)")
        }
        if let value = stream[3], value.count == 49, let key = try? PublicKey(value[0..<33]) {
            fuzzCheck(key.compressed == Array(value[0..<33]), "point \(value[0..<33].hex) re-serialises differently")
        }
        if let value = stream[254], value.count == 2 {
            var reader = WireReader(value)
            var writer = WireWriter()
            writer.writeU16((try? reader.readU16()) ?? 0)
            fuzzCheck(writer.bytes == value, "u16 round trip of \(value.hex)")
        }
    }

    /// n2: 0 = tu64, 11 = tu32.
    static func checkNamespaceTwo(_ stream: TLVStream) {
        if let value = stream[0] { checkTruncated(value, maximumLength: 8) }
        if let value = stream[11] { checkTruncated(value, maximumLength: 4) }
    }

    /// A truncated integer that decodes must re-encode to the same bytes (minimality).
    static func checkTruncated(_ value: [UInt8], maximumLength: Int) {
        var reader = WireReader(value)
        var writer = WireWriter()
        do {
            if maximumLength == 8 {
                writer.writeTruncatedU64(try reader.readTruncatedU64(length: value.count))
            } else {
                writer.writeTruncatedU32(try reader.readTruncatedU32(length: value.count))
            }
        } catch {
            let minimal = value.first != 0
            fuzzCheck(
                value.count > maximumLength || !minimal,
                "truncated integer \(value.hex) is minimal and short enough but fails: \(error)")
            return
        }
        fuzzCheck(writer.bytes == value, "truncated integer \(value.hex) re-encodes as \(writer.bytes.hex)")
        fuzzCheck(reader.isAtEnd, "truncated integer left bytes unread")
    }
}
