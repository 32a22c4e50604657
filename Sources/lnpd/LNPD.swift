import ArgumentParser
import Foundation
import LNPClient
import Logging
import NodeDaemon

#if canImport(Glibc)
import Glibc
#endif

/// lnpd: runs an LNP node. By default every service runs as a thread of this process;
/// `--service NAME` runs one service alone, so a node can also run as four processes that
/// share the data directory.
@main
struct LNPD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lnpd",
        abstract: "Run an LNP node: encrypted Lightning-protocol messaging over TCP and Tor.",
        discussion: "Options may also be set in DATA_DIR/lnpd.conf, one `name = value` per line; flags win.")

    @Option(help: "Data directory (key, database, control socket). Default: ~/.lnp-node.")
    var dataDir: String?

    @Option(help: "Listen address, e.g. 0.0.0.0:9735 or [::]:9735 (repeatable; default 0.0.0.0:9735).")
    var listen: [String] = []

    @Option(help: "Peer to connect to and keep connected: NODEID@HOST:PORT (repeatable).")
    var connect: [String] = []

    @Option(help: "Run only this service as its own process: keyd, peerd, msgd or lnpd.")
    var service: String?

    @Option(help: "File holding the passphrase that encrypts the node key (or set LNP_KEY_PASSPHRASE).")
    var keyPassphraseFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    @Option(help: ArgumentHelp("A running tor's SOCKS port, used to reach .onion peers.", valueName: "HOST:PORT"))
    var torSocks: String?

    @Option(help: ArgumentHelp("A running tor's control port, HOST:PORT or unix:PATH (bootstrap progress, onion services; finds the SOCKS port itself).",
                               valueName: "HOST:PORT"))
    var torControl: String?

    @Option(help: ArgumentHelp("tor's control_auth_cookie file (default: the path tor reports).", valueName: "PATH"))
    var torCookie: String?

    @Option(help: "The control port's password (HashedControlPassword).")
    var torPassword: String?

    @Flag(help: "Publish the TCP listener as a Tor onion service (same .onion after every restart) and advertise it.")
    var onion = false

    @Flag(help: "Never touch clearnet: only .onion peers, loopback listeners, no local DNS.")
    var torOnly = false

    @Flag(help: "Start and supervise the node's own tor (the default when tor is installed and no tor is configured).")
    var torLaunch = false

    @Flag(help: "Do not use Tor at all.")
    var noTor = false

    @Option(help: ArgumentHelp("With --service on several hosts: the bus over tcp with CURVE (key file DATA_DIR/bus-curve.key, the same on every host). Service i listens on BASEPORT+2i and +2i+1.",
                               valueName: "tcp://HOST:BASEPORT"))
    var bus: String?

    @Option(help: ArgumentHelp("A service that runs on another host than --bus names (repeatable).", valueName: "SERVICE=HOST"))
    var busHost: [String] = []

    func run() async throws {
        let directory = DataDirectory.resolve(dataDir)
        var flags = NodeConfiguration.Flags()
        flags.listen = listen
        flags.connect = connect
        flags.keyPassphraseFile = keyPassphraseFile
        flags.logLevel = logLevel
        flags.torSocks = torSocks
        flags.torControl = torControl
        flags.torCookie = torCookie
        flags.torPassword = torPassword
        flags.onion = onion
        flags.torOnly = torOnly
        flags.torLaunch = torLaunch
        flags.noTor = noTor
        flags.bus = bus
        flags.busHosts = busHost
        let only: Node.Service?
        if let service {
            guard let parsed = Node.Service(rawValue: service) else {
                fail("unknown service \"\(service)\"; choose keyd, peerd, msgd or lnpd")
            }
            only = parsed
        } else {
            only = nil
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            fail("cannot create the data directory \(directory): \(error.localizedDescription)")
        }
        let configuration: NodeConfiguration
        do {
            configuration = try NodeConfiguration.resolve(dataDirectory: directory, flags: flags, environment: ProcessInfo.processInfo.environment)
        } catch {
            fail(error.description)
        }
        if configuration.bus != nil && only == nil {
            fail("--bus is for a node split across hosts: run each service with --service NAME (threads of one process always use inproc)")
        }
        let lockName = only.map { "lnpd-\($0.rawValue).lock" } ?? "lnpd.lock"
        guard let lock = InstanceLock(path: directory + "/" + lockName) else {
            fail("another lnpd\(only.map { " --service \($0.rawValue)" } ?? "") is already running with data directory \(directory)")
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: only.map { "lnpd.\($0.rawValue)" } ?? "lnpd")

        let node: Node
        do {
            node = try Node(configuration: configuration, logger: logger)
            try await node.start(only: only)
        } catch {
            fail("could not start: \(error)")
        }
        let what = only.map { "service \($0.rawValue)" } ?? "node"
        print("lnpd: \(what) ready; data directory \(directory); control socket \(FrontDoor.socketPath(dataDirectory: directory))")
        fflush(nil)

        await waitForTerminationSignal()
        logger.info("lnpd: stopping")
        await node.stop()
        withExtendedLifetime(lock) {}
    }

    func fail(_ sentence: String) -> Never {
        FileHandle.standardError.write(Data(("lnpd: " + sentence + "\n").utf8))
        Glibc.exit(1)
    }
}

/// One lnpd per data directory (per service): a POSIX write lock held for the process's
/// life. lnp-cli tests it with F_GETLK (without taking it) to tell "not running" at once.
final class InstanceLock {
    private let descriptor: Int32

    init?(path: String) {
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return nil }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        guard fcntl(descriptor, F_SETLK, &lock) == 0 else {
            close(descriptor)
            return nil
        }
    }

    deinit { close(descriptor) }
}

/// Resolves on SIGINT or SIGTERM.
func waitForTerminationSignal() async {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    signal(SIGPIPE, SIG_IGN)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let queue = DispatchQueue(label: "lnpd.signals")
        let once = SignalOnce(continuation)
        for number in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { once.fire() }
            source.resume()
            SignalOnce.sources.append(source)
        }
    }
}

final class SignalOnce: @unchecked Sendable {
    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []
    private var continuation: CheckedContinuation<Void, Never>?
    private let lock = NSLock()
    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }
    func fire() {
        lock.lock()
        let taken = continuation
        continuation = nil
        lock.unlock()
        taken?.resume()
    }
}
