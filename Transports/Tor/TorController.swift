#if canImport(Glibc)
import Glibc
#endif
import Crypto
import LNPCrypto
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What PROTOCOLINFO told us (control-spec §3.21).
public struct TorProtocolInfo: Sendable, Equatable {
    /// Authentication methods tor accepts: NULL, HASHEDPASSWORD, COOKIE, SAFECOOKIE.
    public var authMethods: [String]
    public var cookieFile: String?
    public var torVersion: String?
}

/// How `authenticate` got in.
public enum TorAuthMethod: String, Sendable, Equatable {
    case null = "NULL"
    case hashedPassword = "HASHEDPASSWORD"
    case cookie = "COOKIE"
    case safeCookie = "SAFECOOKIE"
}

/// An onion service tor runs for us.
public struct OnionService: Sendable, CustomStringConvertible {
    /// The onion name without ".onion".
    public let serviceID: String
    public let key: OnionServiceKey
    /// True when tor generated the key in this call (store it: it is the node's .onion).
    public let isNewKey: Bool

    public var hostName: String { serviceID + ".onion" }
    public var description: String { hostName }
}

/// A client for tor's control port: one connection (TCP or a unix socket), commands sent one at a time and
/// answered in order, each bounded by a timeout, asynchronous events delivered on
/// `events`. When the connection ends, every waiting command fails at once and `events`
/// finishes: nothing waits for an answer that cannot come.
public final class TorController: Sendable {
    public struct Configuration: Sendable {
        /// How long one command may wait for its answer (including commands queued ahead).
        public var commandTimeout: Duration
        public var limits: TorControlReplyParser.Limits
        /// Events kept for a slow consumer; older ones are dropped first.
        public var eventBufferLimit: Int

        public init(commandTimeout: Duration = .seconds(10), limits: TorControlReplyParser.Limits = .init(),
                    eventBufferLimit: Int = 256) {
            self.commandTimeout = commandTimeout
            self.limits = limits
            self.eventBufferLimit = eventBufferLimit
        }
    }

    public let address: TorControlEndpoint.Address
    /// Events subscribed with `setEvents`. Finishes when the connection closes.
    public let events: AsyncStream<TorEvent>
    private let channel: any Channel
    private let configuration: Configuration
    private let end: TorControlConnectionEnd

    private init(address: TorControlEndpoint.Address, channel: any Channel, events: AsyncStream<TorEvent>,
                 configuration: Configuration, end: TorControlConnectionEnd) {
        self.address = address
        self.channel = channel
        self.events = events
        self.configuration = configuration
        self.end = end
    }

    /// Opens a control connection to HOST:PORT (not yet authenticated).
    public static func connect(
        host: String, port: Int, timeout: Duration = .seconds(5), configuration: Configuration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(TorControlError) -> TorController {
        try await connect(address: .tcp(host: host, port: port), timeout: timeout, configuration: configuration, group: group)
    }

    /// Opens a control connection (not yet authenticated).
    public static func connect(
        address: TorControlEndpoint.Address, timeout: Duration = .seconds(5), configuration: Configuration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(TorControlError) -> TorController {
        if case let .tcp(_, port) = address, !(1...65535).contains(port) {
            throw .invalidArgument("control port \(port) is not between 1 and 65535")
        }
        let (events, continuation) = AsyncStream.makeStream(of: TorEvent.self,
                                                            bufferingPolicy: .bufferingNewest(configuration.eventBufferLimit))
        let end = TorControlConnectionEnd()
        let limits = configuration.limits
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        TorControlChannelHandler(limits: limits, events: continuation, end: end))
                }
            }
        let channel: any Channel
        do {
            switch address {
            case let .tcp(host, port):
                if let socketAddress = try? SocketAddress(ipAddress: host, port: port) {
                    channel = try await bootstrap.connect(to: socketAddress).get()
                } else {
                    channel = try await bootstrap.connect(host: host, port: port).get()
                }
            case let .unixSocket(path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch {
            continuation.finish()
            throw connectError(error, address: address, timeout: timeout)
        }
        return TorController(address: address, channel: channel, events: events, configuration: configuration, end: end)
    }

    /// Connects to `endpoint` and authenticates (cookie from the endpoint, or `password`):
    /// what the node does with a tor it launched or one the operator configured.
    public static func connect(
        to endpoint: TorControlEndpoint, password: String? = nil, timeout: Duration = .seconds(5),
        configuration: Configuration = .init(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(TorControlError) -> TorController {
        let controller = try await connect(address: endpoint.address, timeout: timeout,
                                           configuration: configuration, group: group)
        try await controller.authenticate(cookiePath: endpoint.cookiePath, password: password)
        return controller
    }

    private static func connectError(_ error: any Error, address: TorControlEndpoint.Address, timeout: Duration) -> TorControlError {
        var causes: [any Error] = [error]
        if let multiple = error as? NIOConnectionError {
            causes = multiple.connectionErrors.map(\.error) + [multiple.dnsAAAAError, multiple.dnsAError].compactMap { $0 }
        }
        let errnoCodes = causes.compactMap { ($0 as? IOError)?.errnoCode }
        switch address {
        case let .tcp(host, port):
            if errnoCodes.contains(ECONNREFUSED) { return .notListening(host: host, port: port) }
            if causes.contains(where: { if case .connectTimeout = $0 as? ChannelError { true } else { false } }) {
                return .connectTimedOut(host: host, port: port, timeout: timeout)
            }
            return .connectFailed(host: host, port: port, reason: "\(causes.first ?? error)")
        case let .unixSocket(path):
            let reason = errnoCodes.first.map { String(cString: strerror($0)) } ?? "\(causes.first ?? error)"
            return .noControlSocket(path: path, reason: reason, permission: errnoCodes.contains(EACCES))
        }
    }

    /// A controller dropped without `close()` must not keep its connection (and with it
    /// every onion service it added without `detach`) alive.
    deinit {
        end.closedByController()
        channel.close(promise: nil)
    }

    /// Closes the connection; commands still waiting fail with `closedByController`.
    public func close() async {
        end.closedByController()
        try? await channel.close()
    }

    // MARK: Commands

    /// Sends one command line and waits for its reply, whatever its status. `name` is what
    /// errors show instead of the line (which may hold a secret).
    func send(_ line: String, name: String) async throws(TorControlError) -> TorControlReply {
        guard !line.contains(where: { $0 == "\r" || $0 == "\n" }) else {
            throw .invalidArgument("\(name) must be one line")
        }
        guard !end.hasEnded else { throw end.error(for: name) }
        let promise = channel.eventLoop.makePromise(of: TorControlReply.self)
        let timeout = configuration.commandTimeout
        let channel = self.channel
        let end = self.end
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            // The reply stream has lost its place: whatever answer comes later would be
            // taken for the next command's, so the connection must end, and later
            // commands learn why.
            let error = TorControlError.timedOut(command: name, after: timeout)
            end.failed(error)
            promise.fail(error)
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        channel.writeAndFlush(TorControlRequest(line: line, name: name, reply: promise)).whenFailure { _ in
            // Only reached when the handler never saw the request (channel already gone).
            promise.fail(end.error(for: name))
        }
        do {
            return try await promise.futureResult.get()
        } catch let error as TorControlError {
            throw error
        } catch {
            throw .connectionClosed(command: name)
        }
    }

    /// `send`, then requires a 2xx status.
    func sendExpectingSuccess(_ line: String, name: String) async throws(TorControlError) -> TorControlReply {
        let reply = try await send(line, name: name)
        guard reply.isSuccess else { throw .rejected(command: name, status: reply.status, message: reply.message) }
        return reply
    }

    public func protocolInfo() async throws(TorControlError) -> TorProtocolInfo {
        let reply = try await sendExpectingSuccess("PROTOCOLINFO 1", name: "PROTOCOLINFO")
        var info = TorProtocolInfo(authMethods: [], cookieFile: nil, torVersion: nil)
        var sawAuth = false
        for line in reply.lines {
            if line.text.hasPrefix("AUTH ") {
                guard let arguments = TorControlSyntax.keywordArguments(String(line.text.dropFirst(5))),
                      let methods = arguments["METHODS"]
                else { throw .unexpectedReply(command: "PROTOCOLINFO", reason: "its AUTH line has no METHODS") }
                info.authMethods = methods.split(separator: ",").map(String.init)
                info.cookieFile = arguments["COOKIEFILE"]
                sawAuth = true
            } else if line.text.hasPrefix("VERSION ") {
                info.torVersion = TorControlSyntax.keywordArguments(String(line.text.dropFirst(8)))?["Tor"]
            }
        }
        guard sawAuth else { throw .unexpectedReply(command: "PROTOCOLINFO", reason: "no AUTH line") }
        return info
    }

    /// Authenticates with the best method tor offers: NULL; HASHEDPASSWORD when a password
    /// is given; else SAFECOOKIE, then COOKIE, with `cookiePath` or the file tor names.
    /// On failure the connection is closed (tor closes it too after a failed AUTHENTICATE).
    @discardableResult
    public func authenticate(cookiePath: String? = nil, password: String? = nil) async throws(TorControlError) -> TorAuthMethod {
        try await authenticate(cookiePath: cookiePath, password: password, ignoring: [])
    }

    /// `ignoring` lets tests reach COOKIE, which tor always offers together with SAFECOOKIE.
    func authenticate(cookiePath: String?, password: String?,
                      ignoring ignored: Set<TorAuthMethod>) async throws(TorControlError) -> TorAuthMethod {
        do {
            return try await authenticateOnce(cookiePath: cookiePath, password: password, ignoring: ignored)
        } catch {
            await close()
            throw error
        }
    }

    private func authenticateOnce(cookiePath: String?, password: String?,
                                  ignoring ignored: Set<TorAuthMethod>) async throws(TorControlError) -> TorAuthMethod {
        let info = try await protocolInfo()
        let methods = Set(info.authMethods).subtracting(ignored.map(\.rawValue))
        if methods.contains(TorAuthMethod.null.rawValue) {
            _ = try await sendExpectingSuccess("AUTHENTICATE", name: "AUTHENTICATE")
            return .null
        }
        if let password, methods.contains(TorAuthMethod.hashedPassword.rawValue) {
            guard !password.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                throw .invalidArgument("the control password must be one line")
            }
            let reply = try await send("AUTHENTICATE " + TorControlSyntax.quoted(password), name: "AUTHENTICATE")
            guard reply.isSuccess else { throw .wrongPassword }
            return .hashedPassword
        }
        let safeCookie = methods.contains(TorAuthMethod.safeCookie.rawValue)
        if safeCookie || methods.contains(TorAuthMethod.cookie.rawValue) {
            guard let path = cookiePath ?? info.cookieFile else {
                throw .cannotReadCookie(path: "(none)", reason: "tor named no cookie file and none was configured")
            }
            let cookie = try Self.readCookie(path: path)
            if safeCookie {
                try await authenticateSafeCookie(cookie: cookie, path: path)
                return .safeCookie
            }
            let reply = try await send("AUTHENTICATE " + Hex.encode(cookie), name: "AUTHENTICATE")
            guard reply.isSuccess else { throw .cookieRejected(path: path) }
            return .cookie
        }
        if methods.contains(TorAuthMethod.hashedPassword.rawValue) { throw .passwordRequired }
        throw .noUsableAuthMethod(offered: info.authMethods)
    }

    /// control-spec §3.24: both sides prove they know the cookie without sending it, so a
    /// process impersonating tor on the control port learns nothing.
    private func authenticateSafeCookie(cookie: [UInt8], path: String) async throws(TorControlError) {
        let clientNonce = SecureRandom.bytes(32)
        let reply = try await sendExpectingSuccess("AUTHCHALLENGE SAFECOOKIE " + Hex.encode(clientNonce), name: "AUTHCHALLENGE")
        let text = reply.lines.last?.text ?? ""
        guard text.hasPrefix("AUTHCHALLENGE "),
              let arguments = TorControlSyntax.keywordArguments(String(text.dropFirst(14))),
              let serverHash = arguments["SERVERHASH"].flatMap(Hex.decode), serverHash.count == 32,
              let serverNonce = arguments["SERVERNONCE"].flatMap(Hex.decode), serverNonce.count == 32
        else { throw .unexpectedReply(command: "AUTHCHALLENGE", reason: "no 32-byte SERVERHASH and SERVERNONCE") }
        let message = cookie + clientNonce + serverNonce
        let expectedServerHash = Self.hmac(key: "Tor safe cookie authentication server-to-controller hash", message)
        // A mismatch means our cookie file is not this tor's; say so before sending anything.
        guard constantTimeEqual(expectedServerHash, serverHash) else { throw .cookieRejected(path: path) }
        let clientHash = Self.hmac(key: "Tor safe cookie authentication controller-to-server hash", message)
        let answer = try await send("AUTHENTICATE " + Hex.encode(clientHash), name: "AUTHENTICATE")
        guard answer.isSuccess else { throw .cookieRejected(path: path) }
    }

    private static func hmac(key: String, _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Array(key.utf8))))
    }

    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// A tor cookie is exactly 32 bytes; reading at most one more keeps a wrong path
    /// (a log, a device) from being read whole.
    static func readCookie(path: String) throws(TorControlError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotReadCookie(path: path, reason: String(cString: strerror(errno))) }
        defer { Glibc.close(fd) }
        let cookie: [UInt8]
        do {
            cookie = try readAtMost(33, from: fd)
        } catch {
            throw .cannotReadCookie(path: path, reason: error.reason)
        }
        guard cookie.count == 32 else {
            throw .cannotReadCookie(path: path, reason: cookie.count > 32 ? "it is longer than a tor cookie (32 bytes)"
                                                                          : "it is \(cookie.count) bytes, a tor cookie is 32")
        }
        return cookie
    }

    /// GETINFO: the values of `keys`, each present (tor answers all or nothing).
    public func getInfo(_ keys: [String]) async throws(TorControlError) -> [String: String] {
        guard !keys.isEmpty else { throw .invalidArgument("GETINFO needs at least one key") }
        for key in keys {
            guard !key.isEmpty, key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") }) else {
                throw .invalidArgument("GETINFO key '\(key.prefix(40))' has a space, quote or non-ASCII character")
            }
        }
        let reply = try await sendExpectingSuccess("GETINFO " + keys.joined(separator: " "), name: "GETINFO")
        var values: [String: String] = [:]
        for line in reply.lines.dropLast() {
            guard let equals = line.text.firstIndex(of: "=") else {
                throw .unexpectedReply(command: "GETINFO", reason: "a line without KEY=VALUE")
            }
            let key = String(line.text[..<equals])
            values[key] = line.data ?? String(line.text[line.text.index(after: equals)...])
        }
        for key in keys where values[key] == nil {
            throw .unexpectedReply(command: "GETINFO", reason: "no value for \(key)")
        }
        return values
    }

    private func getInfo(_ key: String) async throws(TorControlError) -> String {
        // getInfo checked the key is present.
        try await getInfo([key])[key] ?? ""
    }

    /// Tor's version, e.g. "0.4.9.11".
    public func version() async throws(TorControlError) -> String {
        let text = try await getInfo("version")
        return String(text.prefix { $0 != " " })
    }

    public func bootstrapPhase() async throws(TorControlError) -> TorBootstrapPhase {
        let text = try await getInfo("status/bootstrap-phase")
        guard let phase = TorBootstrapPhase.parse(text) else {
            throw .unexpectedReply(command: "GETINFO status/bootstrap-phase", reason: "'\(text.prefix(80))' is not a BOOTSTRAP status")
        }
        return phase
    }

    /// The addresses tor's SOCKS ports listen on, e.g. ["127.0.0.1:9050"] (or
    /// "unix:/path" for a socket).
    public func socksListeners() async throws(TorControlError) -> [String] {
        let text = try await getInfo("net/listeners/socks")
        guard let words = TorControlSyntax.words(text) else {
            throw .unexpectedReply(command: "GETINFO net/listeners/socks", reason: "unbalanced quotes")
        }
        return words.map(\.word)
    }

    /// Subscribes to these events (replacing earlier subscriptions), e.g. ["STATUS_CLIENT", "HS_DESC"].
    public func setEvents(_ names: [String]) async throws(TorControlError) {
        for name in names {
            guard !name.isEmpty, name.utf8.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) || $0 == UInt8(ascii: "_") }) else {
                throw .invalidArgument("event name '\(name.prefix(40))' is not an upper-case keyword")
            }
        }
        _ = try await sendExpectingSuccess((["SETEVENTS"] + names).joined(separator: " "), name: "SETEVENTS")
    }

    /// ADD_ONION: publishes a v3 onion service forwarding `virtualPort` to `target`
    /// ("127.0.0.1:PORT"). With `key` nil tor generates a new key (returned with
    /// `isNewKey`, to be saved); with a key the service keeps its name. Unless `detach`,
    /// tor removes the service when this connection closes.
    public func addOnion(key: OnionServiceKey?, virtualPort: UInt16, target: String,
                         detach: Bool = false) async throws(TorControlError) -> OnionService {
        guard virtualPort != 0 else { throw .invalidArgument("the onion service's virtual port must not be 0") }
        guard !target.isEmpty, target.utf8.count <= 256,
              target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "\"") })
        else { throw .invalidArgument("onion service target '\(target.prefix(60))' must be HOST:PORT without spaces or commas") }
        var flags: [String] = []
        if key != nil { flags.append("DiscardPK") }
        if detach { flags.append("Detach") }
        var words = ["ADD_ONION", key?.torKeyBlob ?? "NEW:\(OnionServiceKey.keyType)"]
        if !flags.isEmpty { words.append("Flags=" + flags.joined(separator: ",")) }
        words.append("Port=\(virtualPort),\(target)")
        let reply = try await sendExpectingSuccess(words.joined(separator: " "), name: "ADD_ONION")
        var serviceID: String?
        var privateKey: String?
        for line in reply.lines.dropLast() {
            if line.text.hasPrefix("ServiceID=") { serviceID = String(line.text.dropFirst(10)) }
            if line.text.hasPrefix("PrivateKey=") { privateKey = String(line.text.dropFirst(11)) }
        }
        guard let serviceID else { throw .unexpectedReply(command: "ADD_ONION", reason: "no ServiceID") }
        let serviceKey: OnionServiceKey
        if let key {
            serviceKey = key
        } else {
            guard let privateKey else { throw .unexpectedReply(command: "ADD_ONION", reason: "no PrivateKey for the new service") }
            do {
                serviceKey = try OnionServiceKey(torKeyBlob: privateKey)
            } catch {
                throw .unexpectedReply(command: "ADD_ONION", reason: error.description)
            }
        }
        // The name is derived from the key here too: a tor answering with another name
        // would make the node advertise an address it cannot be reached at.
        guard serviceKey.serviceID == serviceID else { throw .serviceIDMismatch(expected: serviceKey.serviceID, got: serviceID) }
        return OnionService(serviceID: serviceID, key: serviceKey, isNewKey: key == nil)
    }

    /// The node's onion service with its lasting name: the key in
    /// `keyDirectory/onion_v3.key` when there is one, else a new key from tor, stored
    /// there before this returns, so every later start publishes the same .onion. If the
    /// new key cannot be stored the service is removed again and the error thrown: a node
    /// whose address changes on every restart is worse than one that says why it has none.
    public func addPersistentOnion(keyDirectory: String, virtualPort: UInt16, target: String,
                                   detach: Bool = false) async throws(TorControlError) -> OnionService {
        let stored: OnionServiceKey?
        do {
            stored = try OnionServiceKey.load(fromDirectory: keyDirectory)
        } catch {
            throw .onionKey(error)
        }
        let service = try await addOnion(key: stored, virtualPort: virtualPort, target: target, detach: detach)
        guard service.isNewKey else { return service }
        do {
            try service.key.save(toDirectory: keyDirectory)
        } catch {
            try? await delOnion(service.serviceID)
            throw .onionKey(error)
        }
        return service
    }

    /// DEL_ONION: removes an onion service this connection (or a detached one) added.
    public func delOnion(_ serviceID: String) async throws(TorControlError) {
        let id = serviceID.hasSuffix(".onion") ? String(serviceID.dropLast(6)) : serviceID
        guard !id.isEmpty, id.utf8.count <= 56,
              id.utf8.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "2")...UInt8(ascii: "7")).contains($0) })
        else { throw .invalidArgument("'\(serviceID.prefix(70))' is not an onion service id") }
        _ = try await sendExpectingSuccess("DEL_ONION " + id, name: "DEL_ONION")
    }
}
