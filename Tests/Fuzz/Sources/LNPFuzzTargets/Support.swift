import CFuzzSupport
import LNPCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Hands the process to libFuzzer (see Package.swift for why we own `main`).
public enum FuzzDriver {
    /// `prepare` builds the harness's fixtures before the first input, so no execution pays
    /// for them and libFuzzer's per-input leak check never sees their allocations.
    public static func run(
        prepare: () -> Void, _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> Never {
        prepare()
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
    }
}

/// Builds a long-lived harness fixture (a handshake or session state prepared once and
/// copied by every execution) with LeakSanitizer looking away. Fixtures are globals holding
/// Swift multi-payload enums (the handshake and session `State`s), and Swift stores an
/// enum's case tag in spare high bits of payload pointers; LeakSanitizer does not recognise
/// such tagged pointers, so it reports the arrays they own as leaked when the process ends
/// (seen as "Direct leak" of the handshake's chaining key and temporary key). Only the
/// fixture's own one-time allocations are ignored; everything an execution allocates is
/// still leak-checked.
func fixture<T>(_ build: () -> T) -> T {
    lnp_fuzz_ignore_leaks_begin()
    defer { lnp_fuzz_ignore_leaks_end() }
    return build()
}

/// A property of the code under test does not hold: stop with a message, so libFuzzer
/// reports a crash and keeps the input. (fatalError traps in every build configuration.)
func fuzzFailure(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("fuzz property violated: \(message)", file: file, line: line)
}

@inline(__always)
func fuzzCheck(
    _ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line
) {
    if !condition { fuzzFailure(message(), file: file, line: line) }
}

/// Reads structure out of fuzz input without ever failing: past the end, integers are
/// zero and byte strings are short. Harnesses take their control bytes first and give
/// the rest to the code under test, so seeds stay close to real wire data.
struct FuzzInput {
    let bytes: [UInt8]
    private(set) var index = 0

    init(_ buffer: UnsafeRawBufferPointer) {
        bytes = Array(buffer)
    }

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var remaining: Int { bytes.count - index }
    var isAtEnd: Bool { index >= bytes.count }

    mutating func byte() -> UInt8 {
        guard index < bytes.count else { return 0 }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func u16() -> UInt16 {
        UInt16(byte()) << 8 | UInt16(byte())
    }

    /// Up to `count` bytes.
    mutating func take(_ count: Int) -> [UInt8] {
        let end = index + min(max(count, 0), remaining)
        defer { index = end }
        return Array(bytes[index..<end])
    }

    mutating func rest() -> [UInt8] {
        take(remaining)
    }
}

/// Splits `data` into the pieces a transport might deliver, driven by `pattern` (taken
/// from the fuzz input): piece sizes cycle through the pattern bytes; a 0 is an empty
/// read. A pattern of only zeros (or none) delivers everything at once. For data over
/// 8 KiB the sizes are scaled up (to about 256 pieces at most), so a 100 KiB frame is not
/// fed a byte at a time on every execution; pieces still cut through headers and bodies.
func chunks(of data: [UInt8], pattern: [UInt8]) -> [ArraySlice<UInt8>] {
    guard pattern.contains(where: { $0 != 0 }) else { return [data[...]] }
    let scale = max(1, data.count / 8192)
    var pieces: [ArraySlice<UInt8>] = []
    var start = 0
    var step = 0
    while start < data.count {
        let size = Int(pattern[step % pattern.count]) * scale
        step += 1
        let end = min(start + size, data.count)
        pieces.append(data[start..<end])
        start = end
    }
    return pieces
}

/// Plaintext messages described by fuzz input, for the round-trip modes of the
/// `frames` and `session` targets. Each message is a control byte `c`, a u16 `n`, then
/// its bytes:
/// - length `n`, or `65_536 + n` when `c & 0xc0 == 0xc0` (over BOLT-8's limit, so only a
///   large frame can carry it);
/// - the bytes are taken from the input; when the input runs short the message is
///   padded with copies of `c`, so big messages cost the fuzzer only three bytes;
/// - `c & 0x20` asks the driver to switch frame format after this message (frames target).
/// At most `maximumMessages` messages and `byteBudget` plaintext bytes in total (beyond
/// that, the rest of the input is ignored), which keeps one execution fast.
struct PlannedMessage {
    var bytes: [UInt8]
    var control: UInt8
    var switchFormatAfter: Bool { control & 0x20 != 0 }
}

func planMessages(_ input: inout FuzzInput, maximumMessages: Int = 64, byteBudget: Int = 150_000) -> [PlannedMessage] {
    var messages: [PlannedMessage] = []
    var budget = byteBudget
    while !input.isAtEnd, messages.count < maximumMessages {
        let control = input.byte()
        var length = Int(input.u16())
        if control & 0xc0 == 0xc0 { length += 65_536 }
        guard length <= budget else { break }
        budget -= length
        var bytes = input.take(length)
        if bytes.count < length {
            bytes += [UInt8](repeating: control, count: length - bytes.count)
        }
        messages.append(PlannedMessage(bytes: bytes, control: control))
    }
    return messages
}

extension Array where Element == UInt8 {
    var hex: String { Hex.encode(self) }
}

extension ArraySlice where Element == UInt8 {
    var hex: String { Hex.encode(self) }
}

func bytes(hex: String) -> [UInt8] {
    guard let bytes = Hex.decode(hex) else { fatalError("bad hex constant \(hex)") }
    return bytes
}
