import Foundation

/// A tiny JSON writer that keeps keys in insertion order, so output is stable for scripts.
enum JSONValue {
    case string(String), number(Double), bool(Bool), null
    case array([JSONValue]), object(JSONObject)

    var serialized: String {
        switch self {
        case let .string(value): return Self.quote(value)
        case let .number(value):
            return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case let .bool(value): return value ? "true" : "false"
        case .null: return "null"
        case let .array(values): return "[" + values.map(\.serialized).joined(separator: ", ") + "]"
        case let .object(object):
            return "{" + object.entries.map { Self.quote($0.key) + ": " + $0.value.serialized }.joined(separator: ", ") + "}"
        }
    }

    static func quote(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

struct JSONObject {
    var entries: [(key: String, value: JSONValue)] = []
    subscript(key: String) -> JSONValue? {
        get { entries.first { $0.key == key }?.value }
        set {
            entries.removeAll { $0.key == key }
            if let newValue { entries.append((key, newValue)) }
        }
    }
}

enum Timestamp {
    static func rfc3339(micros: UInt64) -> String {
        let seconds = time_t(micros / 1_000_000)
        var parts = tm()
        var copy = seconds
        gmtime_r(&copy, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, Int32(micros % 1_000_000))
    }
}
