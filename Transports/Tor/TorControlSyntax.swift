/// The small grammar pieces of control-spec §2.1 that replies and commands share:
/// QuotedString and `KEY=VALUE` argument lists.
public enum TorControlSyntax {
    /// `"` + text with `\` and `"` escaped + `"`. Callers reject CR and LF first, because
    /// tor ends a command at the first line break whatever the quoting.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for character in text {
            if character == "\\" || character == "\"" { out.append("\\") }
            out.append(character)
        }
        return out + "\""
    }

    /// Splits `text` into space-separated words, where a word may be (or end in) a
    /// QuotedString. Returns nil on an unterminated quote or a bad escape.
    /// `KEY="a b" X` → [`KEY=a b`, `X`] with quoting undone; `isQuoted` tells which words
    /// had quotes, because tor distinguishes `"127.0.0.1:9050"` from a bare word.
    public static func words(_ text: String) -> [(word: String, isQuoted: Bool)]? {
        var result: [(String, Bool)] = []
        var scalars = Array(text.unicodeScalars)[...]
        while true {
            while scalars.first == " " { scalars.removeFirst() }
            guard !scalars.isEmpty else { return result }
            var word = ""
            var quoted = false
            while let scalar = scalars.first, scalar != " " {
                if scalar == "\"" {
                    scalars.removeFirst()
                    guard let unquoted = unquote(&scalars) else { return nil }
                    word += unquoted
                    quoted = true
                } else {
                    word.unicodeScalars.append(scalar)
                    scalars.removeFirst()
                }
            }
            result.append((word, quoted))
        }
    }

    /// The `KEY=VALUE` words of a reply or event line, quoting undone, in order. Words
    /// without "=" (positional arguments such as an event's severity) are left out.
    public static func keywordArguments(_ text: String) -> [String: String]? {
        guard let words = words(text) else { return nil }
        var arguments: [String: String] = [:]
        for (word, _) in words {
            guard let equals = word.firstIndex(of: "=") else { continue }
            let key = String(word[..<equals])
            // The first value wins: a repeated key is tor's bug or an attempt to confuse.
            if arguments[key] == nil { arguments[key] = String(word[word.index(after: equals)...]) }
        }
        return arguments
    }

    /// Reads a QuotedString body after its opening quote, up to and including the closing
    /// quote. Escapes as tor's decoder accepts them: \\ \" \' \n \r \t and three-digit octal.
    private static func unquote(_ scalars: inout ArraySlice<Unicode.Scalar>) -> String? {
        var out = ""
        var bytes: [UInt8] = []
        func flushBytes() -> Bool {
            guard !bytes.isEmpty else { return true }
            guard let text = String(validating: bytes, as: UTF8.self) else { return false }
            out += text
            bytes = []
            return true
        }
        while let scalar = scalars.first {
            scalars.removeFirst()
            switch scalar {
            case "\"":
                return flushBytes() ? out : nil
            case "\\":
                guard let escaped = scalars.first else { return nil }
                scalars.removeFirst()
                switch escaped {
                case "\\", "\"", "'": guard flushBytes() else { return nil }; out.unicodeScalars.append(escaped)
                case "n": guard flushBytes() else { return nil }; out += "\n"
                case "r": guard flushBytes() else { return nil }; out += "\r"
                case "t": guard flushBytes() else { return nil }; out += "\t"
                case "0"..."7":
                    var value = Int(escaped.value - 48)
                    for _ in 0..<2 {
                        guard let digit = scalars.first, ("0"..."7").contains(digit) else { return nil }
                        scalars.removeFirst()
                        value = value * 8 + Int(digit.value - 48)
                    }
                    guard value <= 255 else { return nil }
                    bytes.append(UInt8(value))
                default:
                    return nil
                }
            default:
                guard flushBytes() else { return nil }
                out.unicodeScalars.append(scalar)
            }
        }
        return nil
    }
}
