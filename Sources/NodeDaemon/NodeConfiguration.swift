import Foundation
import LNPTransport

/// Everything lnpd needs to start, resolved from flags and `lnpd.conf` in the data
/// directory. The config file takes the same options as the command line, one
/// `name = value` per line (`#` starts a comment); a flag given on the command line
/// replaces every value of that option from the file.
public struct NodeConfiguration: Sendable {
    public var dataDirectory: String
    public var listen: [ListenAddress]
    public var connect: [PeerAddress]
    public var keyPassphrase: String?
    public var logLevel: String

    public static let configFileName = "lnpd.conf"
    public static let defaultListen = "0.0.0.0:9735"

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Values as given on the command line; nil or empty means "not given".
    public struct Flags: Sendable {
        public var listen: [String] = []
        public var connect: [String] = []
        public var keyPassphraseFile: String?
        public var logLevel: String?
        public init() {}
    }

    public static let fileOptions: Set<String> = ["listen", "connect", "key-passphrase-file", "log-level"]

    public static func resolve(dataDirectory: String, flags: Flags, environment: [String: String]) throws(Failure) -> NodeConfiguration {
        let file = try readConfigFile(dataDirectory + "/" + configFileName)
        let listenStrings = !flags.listen.isEmpty ? flags.listen : (file["listen"] ?? [defaultListen])
        let connectStrings = !flags.connect.isEmpty ? flags.connect : (file["connect"] ?? [])
        var listen: [ListenAddress] = []
        for text in listenStrings {
            do { listen.append(try ListenAddress(parsing: text)) } catch { throw Failure("--listen \(text): \(error.description)") }
        }
        var connect: [PeerAddress] = []
        for text in connectStrings {
            do { connect.append(try PeerAddress(parsing: text)) } catch { throw Failure("--connect \(text): \(error.description)") }
        }
        var passphrase = environment["LNP_KEY_PASSPHRASE"]
        if let path = flags.keyPassphraseFile ?? file["key-passphrase-file"]?.last {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw Failure("cannot read the passphrase file \(path)")
            }
            passphrase = text.trimmingCharacters(in: .newlines)
        }
        let logLevel = flags.logLevel ?? file["log-level"]?.last ?? "info"
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw Failure("unknown log level \"\(logLevel)\" (trace, debug, info, notice, warning, error, critical)")
        }
        return NodeConfiguration(dataDirectory: dataDirectory, listen: listen, connect: connect, keyPassphrase: passphrase, logLevel: logLevel)
    }

    /// Parses `lnpd.conf`; a missing file is an empty configuration.
    static func readConfigFile(_ path: String) throws(Failure) -> [String: [String]] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Failure("cannot read \(path)")
        }
        var values: [String: [String]] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw Failure("\(path) line \(index + 1): expected \"name = value\", got \"\(trimmed)\"")
            }
            let name = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard fileOptions.contains(name) else {
                throw Failure("\(path) line \(index + 1): unknown option \"\(name)\" (known: \(fileOptions.sorted().joined(separator: ", ")))")
            }
            values[name, default: []].append(value)
        }
        return values
    }
}
