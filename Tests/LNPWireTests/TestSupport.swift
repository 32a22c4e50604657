import Foundation
import Testing

@testable import LNPWire

// MARK: - Hex

enum HexError: Error, CustomStringConvertible {
    case invalid(String)
    var description: String {
        switch self {
        case let .invalid(text): return "invalid hex: \(text.prefix(40))"
        }
    }
}

extension Array where Element == UInt8 {
    init(hex: String) throws {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { throw HexError.invalid(hex) }
        func nibble(_ digit: UInt8) throws -> UInt8 {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
            default: throw HexError.invalid(hex)
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            bytes.append(try nibble(digits[index]) << 4 | nibble(digits[index + 1]))
            index += 2
        }
        self = bytes
    }

    var hex: String {
        let alphabet = [Character]("0123456789abcdef")
        var text = ""
        text.reserveCapacity(count * 2)
        for byte in self {
            text.append(alphabet[Int(byte >> 4)])
            text.append(alphabet[Int(byte & 0x0f)])
        }
        return text
    }
}

// MARK: - Fixtures

enum Fixtures {
    /// Loads `Fixtures/<name>.json` from the test bundle; fails the test if it is missing or malformed.
    static func load<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        let url = try #require(
            Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"),
            "fixture \(name).json is missing from the test bundle")
        let data = try Data(contentsOf: url)
        return try JSONDecoder().decode(T.self, from: data)
    }
}

/// A JSON value that is either an unsigned integer or a string (fixture `values`).
enum FixtureScalar: Decodable, Equatable, CustomStringConvertible {
    case number(UInt64)
    case text(String)

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(UInt64.self) {
            self = .number(number)
        } else {
            self = .text(try container.decode(String.self))
        }
    }

    var description: String {
        switch self {
        case let .number(value): return String(value)
        case let .text(value): return value
        }
    }
}

// MARK: - Seeded randomness

/// SplitMix64: tiny, fast and fully determined by its seed, so a failing
/// property test can be replayed from the seed it prints.
struct SeededGenerator: RandomNumberGenerator {
    private(set) var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return mixed ^ (mixed >> 31)
    }

    /// `LNP_WIRE_TEST_SEED` replays a run; otherwise each run explores a fresh seed.
    /// The seed is printed and is part of every failure message.
    static func forTest(_ name: String) -> (generator: SeededGenerator, seed: UInt64) {
        let seed: UInt64
        if let text = ProcessInfo.processInfo.environment["LNP_WIRE_TEST_SEED"], let value = UInt64(text) {
            seed = value
        } else {
            seed = UInt64.random(in: 0...UInt64.max)
        }
        print("[\(name)] seed \(seed) (replay with LNP_WIRE_TEST_SEED=\(seed))")
        return (SeededGenerator(seed: seed), seed)
    }
}

extension RandomNumberGenerator {
    mutating func bytes(_ count: Int) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count {
            var word = next()
            for _ in 0..<min(8, count - result.count) {
                result.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return result
    }

    /// Mostly short arrays, sometimes long ones, so both common and edge sizes occur.
    mutating func byteString(maxLength: Int) -> [UInt8] {
        let roll = Int.random(in: 0..<10, using: &self)
        let length: Int
        switch roll {
        case 0: length = 0
        case 1...6: length = Int.random(in: 0...min(maxLength, 40), using: &self)
        default: length = Int.random(in: 0...maxLength, using: &self)
        }
        return bytes(length)
    }

    /// Values clustered around the BigSize width boundaries, plus uniform ones.
    mutating func interestingUInt64() -> UInt64 {
        let boundaries: [UInt64] = [0, 1, 0xfc, 0xfd, 0xfe, 0xff, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, .max]
        switch Int.random(in: 0..<4, using: &self) {
        case 0:
            let base = boundaries[Int.random(in: 0..<boundaries.count, using: &self)]
            return base &+ UInt64.random(in: 0...2, using: &self) &- 1
        case 1: return UInt64.random(in: 0...0x1_0000, using: &self)
        case 2: return UInt64.random(in: 0...UInt64(UInt32.max), using: &self)
        default: return next()
        }
    }
}

// MARK: - secp256k1 point check (for the n1 `point` field)

/// Decides whether 33 bytes are a valid compressed secp256k1 point: prefix 02/03,
/// x < p, and x³ + 7 a quadratic residue mod p (Euler's criterion), so a y exists.
/// Test-only arithmetic: 4 little-endian 64-bit limbs, p = 2²⁵⁶ − 2³² − 977.
enum Secp256k1PointCheck {
    typealias Limbs = [UInt64]

    static let p: Limbs = [0xffff_fffe_ffff_fc2f, .max, .max, .max]
    /// 2²⁵⁶ mod p.
    static let foldConstant: UInt64 = 0x1_0000_03d1

    static func isValidCompressedPoint(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == 33, bytes[0] == 2 || bytes[0] == 3 else { return false }
        var x: Limbs = [0, 0, 0, 0]
        for (index, byte) in bytes[1...].enumerated() {
            let limb = 3 - index / 8
            x[limb] = x[limb] << 8 | UInt64(byte)
        }
        guard compare(x, p) < 0 else { return false }
        let rhs = add(multiply(multiply(x, x), x), [7, 0, 0, 0])
        // (p − 1) / 2
        let exponent: Limbs = [0xffff_ffff_7fff_fe17, .max, .max, 0x7fff_ffff_ffff_ffff]
        let legendre = power(rhs, exponent)
        return legendre == [1, 0, 0, 0] || rhs == [0, 0, 0, 0]
    }

    static func compare(_ a: Limbs, _ b: Limbs) -> Int {
        for index in stride(from: 3, through: 0, by: -1) where a[index] != b[index] {
            return a[index] < b[index] ? -1 : 1
        }
        return 0
    }

    static func subtractP(_ a: Limbs) -> Limbs {
        var result = a
        var borrow: UInt64 = 0
        for index in 0..<4 {
            let (d1, o1) = a[index].subtractingReportingOverflow(p[index])
            let (d2, o2) = d1.subtractingReportingOverflow(borrow)
            result[index] = d2
            borrow = (o1 || o2) ? 1 : 0
        }
        return result
    }

    /// Adds a small value (below 2⁶⁴·2) at limb 0, folding any 2²⁵⁶ overflow back in.
    static func addSmall(_ a: Limbs, low: UInt64, high: UInt64) -> Limbs {
        var result = a
        var carry = high
        let (s0, o0) = result[0].addingReportingOverflow(low)
        result[0] = s0
        carry &+= o0 ? 1 : 0
        for index in 1..<4 {
            let (sum, overflow) = result[index].addingReportingOverflow(carry)
            result[index] = sum
            carry = overflow ? 1 : 0
        }
        if carry != 0 {
            result = addSmall(result, low: foldConstant, high: 0)
        }
        return result
    }

    static func normalize(_ a: Limbs) -> Limbs {
        var result = a
        while compare(result, p) >= 0 { result = subtractP(result) }
        return result
    }

    static func add(_ a: Limbs, _ b: Limbs) -> Limbs {
        var result: Limbs = [0, 0, 0, 0]
        var carry: UInt64 = 0
        for index in 0..<4 {
            let (s1, o1) = a[index].addingReportingOverflow(b[index])
            let (s2, o2) = s1.addingReportingOverflow(carry)
            result[index] = s2
            carry = (o1 || o2) ? 1 : 0
        }
        if carry != 0 { result = addSmall(result, low: foldConstant, high: 0) }
        return normalize(result)
    }

    static func multiply(_ a: Limbs, _ b: Limbs) -> Limbs {
        var wide = [UInt64](repeating: 0, count: 8)
        for i in 0..<4 {
            var carry: UInt64 = 0
            for j in 0..<4 {
                let (high, low) = a[i].multipliedFullWidth(by: b[j])
                let (s1, o1) = wide[i + j].addingReportingOverflow(low)
                let (s2, o2) = s1.addingReportingOverflow(carry)
                wide[i + j] = s2
                carry = high &+ (o1 ? 1 : 0) &+ (o2 ? 1 : 0)
            }
            wide[i + 4] = carry
        }
        // wide = low + high·2²⁵⁶ ≡ low + high·foldConstant (mod p).
        var folded: Limbs = [0, 0, 0, 0]
        var carry: UInt64 = 0
        for index in 0..<4 {
            let (high, low) = wide[index + 4].multipliedFullWidth(by: foldConstant)
            let (s1, o1) = wide[index].addingReportingOverflow(low)
            let (s2, o2) = s1.addingReportingOverflow(carry)
            folded[index] = s2
            carry = high &+ (o1 ? 1 : 0) &+ (o2 ? 1 : 0)
        }
        let (high, low) = carry.multipliedFullWidth(by: foldConstant)
        return normalize(addSmall(folded, low: low, high: high))
    }

    static func power(_ base: Limbs, _ exponent: Limbs) -> Limbs {
        var result: Limbs = [1, 0, 0, 0]
        for limb in stride(from: 3, through: 0, by: -1) {
            for bit in stride(from: 63, through: 0, by: -1) {
                result = multiply(result, result)
                if exponent[limb] >> UInt64(bit) & 1 == 1 {
                    result = multiply(result, base)
                }
            }
        }
        return result
    }
}
