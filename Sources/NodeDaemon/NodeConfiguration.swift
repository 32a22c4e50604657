import Foundation
import LNPTransport
import LNPTransportTor
import PeerDaemon

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
    public var tor: TorSettings
    /// `--service` processes on several hosts: the bus over tcp with CURVE.
    public var bus: TCPBus?

    /// The bus across hosts: service `i` of the standard layout listens on `basePort + 2i`
    /// and `basePort + 2i + 1` on `host`, or on its own host from `hosts`.
    public struct TCPBus: Equatable, Sendable {
        public var host: String
        public var basePort: UInt16
        public var hosts: [String: String]
    }

    public static let configFileName = "lnpd.conf"
    public static let defaultListen = "0.0.0.0:9735"
    /// With `--tor-only` nothing listens on a public interface: tor reaches us on loopback.
    public static let defaultTorOnlyListen = "127.0.0.1:9735"

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
        public var torSocks: String?
        public var torControl: String?
        public var torCookie: String?
        public var torPassword: String?
        /// Switches: true when given on the command line; false means "not given".
        public var onion = false
        public var torOnly = false
        public var torLaunch = false
        public var noTor = false
        public var bus: String?
        public var busHosts: [String] = []
        public init() {}
    }

    public static let fileOptions: Set<String> = [
        "listen", "connect", "key-passphrase-file", "log-level",
        "tor-socks", "tor-control", "tor-cookie", "tor-password", "onion", "tor-only", "tor-launch", "no-tor",
        "bus", "bus-host",
    ]

    public static func resolve(dataDirectory: String, flags: Flags, environment: [String: String]) throws(Failure) -> NodeConfiguration {
        let file = try readConfigFile(dataDirectory + "/" + configFileName)
        let tor = try resolveTor(flags: flags, file: file, environment: environment)
        let listenStrings = !flags.listen.isEmpty ? flags.listen : (file["listen"] ?? [tor.torOnly ? defaultTorOnlyListen : defaultListen])
        let connectStrings = !flags.connect.isEmpty ? flags.connect : (file["connect"] ?? [])
        var listen: [ListenAddress] = []
        for text in listenStrings {
            do { listen.append(try ListenAddress(parsing: text)) } catch { throw Failure("--listen \(text): \(error.description)") }
        }
        var connect: [PeerAddress] = []
        for text in connectStrings {
            do { connect.append(try PeerAddress(parsing: text)) } catch { throw Failure("--connect \(text): \(error.description)") }
        }
        if tor.torOnly {
            // Serial lines and spool directories are not clearnet; IP networks are, except
            // the loopback listener tor brings onion connections to.
            for address in listen {
                switch address.location {
                case let .tcp(host, _) where isLoopback(host): continue
                case .serial, .spool: continue
                default:
                    throw Failure("--listen \(address): with --tor-only the node listens on loopback only (e.g. 127.0.0.1:9735); tor brings the onion's connections there")
                }
            }
            for address in connect {
                switch address.location {
                case let .tcp(host, _) where host.isOnion: continue
                case .serial, .spool: continue
                default:
                    throw Failure("--connect \(address): with --tor-only only .onion peers can be reached; clearnet addresses are refused")
                }
            }
        } else if !tor.isEnabled, let onionPeer = connect.first(where: { if case let .tcp(host, _) = $0.location { host.isOnion } else { false } }) {
            throw Failure("--connect \(onionPeer): reaching an onion service needs tor (--tor-socks, --tor-control or --tor-launch)")
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
        let bus = try resolveBus(text: flags.bus ?? file["bus"]?.last, hosts: !flags.busHosts.isEmpty ? flags.busHosts : (file["bus-host"] ?? []))
        return NodeConfiguration(dataDirectory: dataDirectory, listen: listen, connect: connect, keyPassphrase: passphrase, logLevel: logLevel,
                                 tor: tor, bus: bus)
    }

    static let busServices = ["lnpd", "keyd", "peerd", "msgd"]

    /// `tcp://HOST:BASEPORT` and `SERVICE=HOST` entries.
    static func resolveBus(text: String?, hosts: [String]) throws(Failure) -> TCPBus? {
        guard let text else {
            if !hosts.isEmpty { throw Failure("--bus-host needs --bus tcp://HOST:BASEPORT") }
            return nil
        }
        guard text.hasPrefix("tcp://") else {
            throw Failure("--bus \(text): only tcp://HOST:BASEPORT is an option (threads use inproc and --service processes on one host use ipc by themselves)")
        }
        let listen: ListenAddress
        do { listen = try ListenAddress(parsing: String(text.dropFirst("tcp://".count))) } catch {
            throw Failure("--bus \(text): \(error.description)")
        }
        guard case let .tcp(host, port) = listen.location, port > 0 else {
            throw Failure("--bus \(text): give a host and a base port above 0, e.g. tcp://10.0.0.1:9800")
        }
        var byService: [String: String] = [:]
        for entry in hosts {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, busServices.contains(parts[0]), !parts[1].isEmpty else {
                throw Failure("--bus-host \(entry): expected SERVICE=HOST with SERVICE one of \(busServices.joined(separator: ", "))")
            }
            do { _ = try LNPTransport.Host(parsing: parts[1]) } catch { throw Failure("--bus-host \(entry): \(error.description)") }
            byService[parts[0]] = parts[1]
        }
        return TCPBus(host: host.description, basePort: port, hosts: byService)
    }

    static func isLoopback(_ host: LNPTransport.Host) -> Bool {
        switch host {
        case let .ipv4(bytes): bytes.first == 127
        case let .ipv6(bytes): bytes == [UInt8](repeating: 0, count: 15) + [1]
        case let .dns(name): name == "localhost"
        case .onion: false
        }
    }

    /// A switch is on when given as a flag, or as `NAME = true` in the file.
    static func switchValue(_ name: String, flag: Bool, file: [String: [String]]) throws(Failure) -> Bool {
        if flag { return true }
        guard let text = file[name]?.last else { return false }
        switch text.lowercased() {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: throw Failure("\(configFileName): \(name) = \(text): expected true or false")
        }
    }

    static func resolveTor(flags: Flags, file: [String: [String]], environment: [String: String]) throws(Failure) -> TorSettings {
        var tor = TorSettings()
        let noTor = try switchValue("no-tor", flag: flags.noTor, file: file)
        let launch = try switchValue("tor-launch", flag: flags.torLaunch, file: file)
        tor.publishOnion = try switchValue("onion", flag: flags.onion, file: file)
        tor.torOnly = try switchValue("tor-only", flag: flags.torOnly, file: file)
        tor.cookiePath = flags.torCookie ?? file["tor-cookie"]?.last
        tor.password = flags.torPassword ?? file["tor-password"]?.last
        let socksText = flags.torSocks ?? file["tor-socks"]?.last
        let controlText = flags.torControl ?? file["tor-control"]?.last
        var socks: TorEndpoint?
        var control: TorControlEndpoint.Address?
        do throws(AddressError) {
            socks = try socksText.map { text throws(AddressError) in try TorEndpoint(parsing: text) }
        } catch {
            throw Failure("--tor-socks \(socksText ?? ""): \(error.description)")
        }
        do throws(AddressError) {
            control = try controlText.map { text throws(AddressError) in try TorControlEndpoint.Address(parsingControl: text) }
        } catch {
            throw Failure("--tor-control \(controlText ?? ""): \(error.description)")
        }
        if let cookie = tor.cookiePath, !FileManager.default.isReadableFile(atPath: cookie) {
            throw Failure("--tor-cookie \(cookie): cannot read that file (tor writes it when CookieAuthentication is 1)")
        }

        if noTor {
            let conflicting = [("--tor-launch", launch), ("--onion", tor.publishOnion), ("--tor-only", tor.torOnly),
                               ("--tor-socks", socks != nil), ("--tor-control", control != nil)].filter(\.1).map(\.0)
            if !conflicting.isEmpty {
                throw Failure("--no-tor cannot be combined with \(conflicting.joined(separator: ", "))")
            }
            return tor
        }
        if launch && (socks != nil || control != nil) {
            throw Failure("--tor-launch starts the node's own tor, so it cannot be combined with --tor-socks or --tor-control")
        }
        if socks != nil || control != nil {
            tor.source = .external(socks: socks, control: control)
        } else if let binary = findExecutable("tor", environment: environment) {
            tor.source = .launch(torBinary: binary, implicit: !launch)
        } else if launch || tor.publishOnion || tor.torOnly {
            throw Failure("tor is not installed (no `tor` on PATH): install it (apt-get install tor) or point the node at a running tor with --tor-socks/--tor-control")
        }
        if tor.publishOnion && !tor.usesControlPort {
            throw Failure("--onion needs tor's control port to publish the onion service: give --tor-control HOST:PORT (or use --tor-launch)")
        }
        return tor
    }

    /// The first executable NAME in PATH or the sbin folders (or LNP_TOR_BINARY for tor).
    static func findExecutable(_ name: String, environment: [String: String]) -> String? {
        if name == "tor", let explicit = environment["LNP_TOR_BINARY"], !explicit.isEmpty {
            return FileManager.default.isExecutableFile(atPath: explicit) ? explicit : nil
        }
        // Debian installs tor in /usr/sbin, which a normal user's PATH often lacks.
        let path = (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
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

extension Location {
    var isSpool: Bool { if case .spool = self { true } else { false } }
}
