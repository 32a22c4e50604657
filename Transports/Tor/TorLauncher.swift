#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers

public enum TorLaunchError: Error, Equatable, Sendable, CustomStringConvertible {
    case torNotInstalled(searchPath: String)
    case cannotPrepareDirectory(path: String, reason: String)
    case invalidExtraLine(String)
    case cannotStart(executable: String, reason: String)
    case exitedDuringStartup(status: String, logTail: String)
    case startTimedOut(after: Duration, logTail: String)
    case alreadyStarted
    case stopped

    public var description: String {
        switch self {
        case let .torNotInstalled(searchPath):
            "tor is not installed: no executable 'tor' in PATH (\(searchPath)); install it (apt install tor) or point the node at a running tor"
        case let .cannotPrepareDirectory(path, reason):
            "cannot prepare tor's directory \(path): \(reason)"
        case let .invalidExtraLine(line):
            "the extra torrc line '\(line.prefix(60))' contains a line break or NUL"
        case let .cannotStart(executable, reason):
            "cannot start \(executable): \(reason)"
        case let .exitedDuringStartup(status, logTail):
            "tor \(status) while starting" + (logTail.isEmpty ? "" : "; its last words: \(logTail)")
        case let .startTimedOut(after, logTail):
            "tor did not open its control port within \(after)" + (logTail.isEmpty ? "" : "; its last words: \(logTail)")
        case .alreadyStarted:
            "this tor launcher has already been started"
        case .stopped:
            "the tor launcher was stopped"
        }
    }
}

/// What the supervised tor did, for the node's log and for reconnecting its controller
/// (a restarted tor has a new control port).
public enum TorLauncherEvent: Sendable, Equatable {
    case started(pid: Int32, endpoint: TorControlEndpoint)
    /// Tor exited without being asked to; a restart follows after `restartIn`.
    case exitedUnexpectedly(pid: Int32, status: String, restartIn: Duration)
    case restartFailed(TorLaunchError, retryIn: Duration)
    case stopped
}

/// Runs and supervises the node's own tor when none is configured: a private
/// DataDirectory (mode 0700) under the node's data directory, a generated torrc with
/// automatic SOCKS and control ports and cookie authentication, restarts with backoff
/// after an unexpected exit, SIGTERM then SIGKILL on `stop()`. Tor also watches our pid
/// (`__OwningControllerProcess`) and exits by itself if the node dies without stopping it.
public final class TorLauncher: Sendable {
    public struct Configuration: Sendable {
        /// The node's data directory; tor gets `<this>/tor`.
        public var nodeDataDirectory: String
        /// nil: the first `tor` in PATH.
        public var torExecutable: String?
        /// Appended to the generated torrc (e.g. bridges, or a test network's DirAuthority).
        public var extraTorrcLines: [String]
        public var startTimeout: Duration
        public var stopTimeout: Duration
        public var initialRestartDelay: Duration
        public var maximumRestartDelay: Duration
        /// A tor that ran this long before exiting is restarted after the initial delay again.
        public var stableAfter: Duration

        public init(nodeDataDirectory: String, torExecutable: String? = nil, extraTorrcLines: [String] = [],
                    startTimeout: Duration = .seconds(30), stopTimeout: Duration = .seconds(5),
                    initialRestartDelay: Duration = .milliseconds(500), maximumRestartDelay: Duration = .seconds(30),
                    stableAfter: Duration = .seconds(60)) {
            self.nodeDataDirectory = nodeDataDirectory
            self.torExecutable = torExecutable
            self.extraTorrcLines = extraTorrcLines
            self.startTimeout = startTimeout
            self.stopTimeout = stopTimeout
            self.initialRestartDelay = initialRestartDelay
            self.maximumRestartDelay = maximumRestartDelay
            self.stableAfter = stableAfter
        }

        public var torDirectory: String { nodeDataDirectory + "/tor" }
        var torrcPath: String { torDirectory + "/torrc" }
        var controlPortFile: String { torDirectory + "/control-port" }
        var cookiePath: String { torDirectory + "/control_auth_cookie" }
        var logPath: String { torDirectory + "/tor.log" }
    }

    private enum State: Sendable {
        case idle
        /// Starting tor: the first time (`delay` zero) or after an unexpected exit.
        case launching(delay: Duration)
        /// `delay` is what the next restart waits unless tor ran for `stableAfter`.
        case running(TorProcess, TorControlEndpoint, startedAt: ContinuousClock.Instant, delay: Duration)
        case stopping
        case stopped
    }

    public let configuration: Configuration
    public let events: AsyncStream<TorLauncherEvent>
    private let eventSink: AsyncStream<TorLauncherEvent>.Continuation
    private let state = NIOLockedValueBox<State>(.idle)
    private let supervisor = NIOLockedValueBox<Task<Void, Never>?>(nil)

    public init(configuration: Configuration) {
        self.configuration = configuration
        (events, eventSink) = AsyncStream.makeStream(of: TorLauncherEvent.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// The pid of the tor running now, if any.
    public var pid: Int32? {
        state.withLockedValue { if case let .running(process, _, _, _) = $0 { process.pid } else { nil } }
    }

    /// The control endpoint of the tor running now, if any.
    public var endpoint: TorControlEndpoint? {
        state.withLockedValue { if case let .running(_, endpoint, _, _) = $0 { endpoint } else { nil } }
    }

    /// Starts tor and returns once its control port is open.
    public func start() async throws(TorLaunchError) -> TorControlEndpoint {
        let mayStart = state.withLockedValue { state in
            guard case .idle = state else { return false }
            state = .launching(delay: .zero)
            return true
        }
        guard mayStart else { throw .alreadyStarted }
        do {
            let (process, endpoint) = try await launch()
            try await adopt(process, endpoint: endpoint, delay: .zero)
            return endpoint
        } catch {
            state.withLockedValue { if case .launching = $0 { $0 = .idle } }
            throw error
        }
    }

    /// Stops tor (SIGTERM, then SIGKILL after `stopTimeout`) and the supervision. Idempotent.
    public func stop() async {
        let previous = state.withLockedValue { state -> State in
            let previous = state
            if case .stopped = previous { return previous }
            state = .stopping
            return previous
        }
        switch previous {
        case .stopped, .stopping: return
        case .idle, .launching, .running: break
        }
        // A restart in progress ends (and stops the tor it may just have started) before
        // stop() returns: no tor outlives it.
        let restart = supervisor.withLockedValue { task in defer { task = nil }; return task }
        restart?.cancel()
        await restart?.value
        if case let .running(process, _, _, _) = previous {
            await process.terminate(within: configuration.stopTimeout)
        }
        state.withLockedValue { $0 = .stopped }
        eventSink.yield(.stopped)
        eventSink.finish()
    }

    // MARK: Supervision

    private func adopt(_ process: TorProcess, endpoint: TorControlEndpoint, delay: Duration) async throws(TorLaunchError) {
        let adopted = state.withLockedValue { state in
            guard case .launching = state else { return false }
            state = .running(process, endpoint, startedAt: .now, delay: delay)
            return true
        }
        guard adopted else {
            // stop() came while tor was starting.
            await process.terminate(within: configuration.stopTimeout)
            throw .stopped
        }
        eventSink.yield(.started(pid: process.pid, endpoint: endpoint))
        process.onExit { [weak self] status in self?.processExited(process, status: status) }
    }

    private func processExited(_ process: TorProcess, status: String) {
        let config = configuration
        let delay = state.withLockedValue { state -> Duration? in
            guard case let .running(current, _, startedAt, previousDelay) = state, current.pid == process.pid else { return nil }
            // Back off while tor keeps dying young; start over once it ran for a while.
            let delay = ContinuousClock.now - startedAt >= config.stableAfter || previousDelay == .zero
                ? config.initialRestartDelay
                : min(previousDelay * 2, config.maximumRestartDelay)
            state = .launching(delay: delay)
            return delay
        }
        guard let delay else { return }
        eventSink.yield(.exitedUnexpectedly(pid: process.pid, status: status, restartIn: delay))
        let task = Task { [weak self] in
            guard let self else { return }
            await self.restart(after: delay)
        }
        supervisor.withLockedValue { $0 = task }
    }

    private func restart(after firstDelay: Duration) async {
        var delay = firstDelay
        while true {
            try? await Task.sleep(for: delay)
            guard !Task.isCancelled, case .launching = state.withLockedValue({ $0 }) else { return }
            do {
                let (process, endpoint) = try await launch()
                try await adopt(process, endpoint: endpoint, delay: delay)
                return
            } catch {
                if case .stopped = error { return }
                delay = min(delay * 2, configuration.maximumRestartDelay)
                eventSink.yield(.restartFailed(error, retryIn: delay))
            }
        }
    }

    // MARK: One tor process

    private func launch() async throws(TorLaunchError) -> (TorProcess, TorControlEndpoint) {
        let config = configuration
        let executable: String
        if let configured = config.torExecutable {
            executable = configured
        } else {
            executable = try Self.findOnPath("tor")
        }
        try prepareDirectory()
        // Tor may open its control port (and write the port file) before it writes the new
        // cookie: a stale port file or cookie from the previous run must not be taken for
        // this run's.
        unlink(config.controlPortFile)
        unlink(config.cookiePath)
        // Each run's log starts empty; the previous run's (often the one that crashed) is kept once.
        rename(config.logPath, config.logPath + ".previous")
        let process = try TorProcess.spawn(executable: executable,
                                           arguments: ["-f", config.torrcPath, "--defaults-torrc", "/dev/null"],
                                           outputPath: config.logPath)
        // Tor tells no one when its control port is open except through the file it
        // writes (ControlPortWriteToFile); polling it is the documented way.
        let deadline = ContinuousClock.now + config.startTimeout
        while true {
            if let status = process.exitStatus {
                throw .exitedDuringStartup(status: status, logTail: Self.tail(of: config.logPath))
            }
            if let endpoint = readControlPortFile(), access(config.cookiePath, R_OK) == 0 {
                return (process, endpoint)
            }
            guard ContinuousClock.now < deadline, !Task.isCancelled else {
                await process.terminate(within: config.stopTimeout)
                throw Task.isCancelled ? .stopped : .startTimedOut(after: config.startTimeout, logTail: Self.tail(of: config.logPath))
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    private func prepareDirectory() throws(TorLaunchError) {
        let config = configuration
        let directory = config.torDirectory
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .cannotPrepareDirectory(path: directory, reason: String(cString: strerror(errno)))
        }
        // Tor refuses a DataDirectory others can read; an existing one may be wider.
        guard chmod(directory, 0o700) == 0 else {
            throw .cannotPrepareDirectory(path: directory, reason: String(cString: strerror(errno)))
        }
        for line in config.extraTorrcLines where line.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
            throw .invalidExtraLine(line)
        }
        var torrc = """
            # Written by LNP Node on every start of its own tor; edits are overwritten.
            DataDirectory \(Self.torrcQuoted(directory))
            SocksPort 127.0.0.1:auto ExtendedErrors IsolateSOCKSAuth
            ControlPort 127.0.0.1:auto
            ControlPortWriteToFile \(Self.torrcQuoted(config.controlPortFile))
            CookieAuthentication 1
            CookieAuthFile \(Self.torrcQuoted(config.cookiePath))
            GeoIPFile /dev/null
            GeoIPv6File /dev/null
            __OwningControllerProcess \(getpid())
            Log notice stdout

            """
        torrc += config.extraTorrcLines.map { $0 + "\n" }.joined()
        do {
            try Data(torrc.utf8).write(to: URL(fileURLWithPath: config.torrcPath), options: .atomic)
        } catch {
            throw .cannotPrepareDirectory(path: config.torrcPath, reason: "\(error.localizedDescription)")
        }
    }

    /// `PORT=127.0.0.1:35617`, as tor writes it.
    private func readControlPortFile() -> TorControlEndpoint? {
        guard let text = Self.readSmallFile(configuration.controlPortFile, limit: 256),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PORT=") }),
              let colon = line.lastIndex(of: ":"),
              let port = Int(line[line.index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = String(line[line.index(line.startIndex, offsetBy: 5)..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return TorControlEndpoint(host: host, port: port, cookiePath: configuration.cookiePath)
    }

    /// Torrc values may be quoted with C escapes; quoting keeps paths with spaces whole.
    private static func torrcQuoted(_ path: String) -> String {
        TorControlSyntax.quoted(path)
    }

    static func findOnPath(_ name: String,
                           searchPath: String = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin") throws(TorLaunchError) -> String {
        for directory in searchPath.split(separator: ":") where !directory.isEmpty {
            let candidate = directory + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw .torNotInstalled(searchPath: searchPath)
    }

    /// The last few lines of tor's log, for errors (bounded: only the file's last 2 KiB).
    static func tail(of path: String) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > 2048 ? size - 2048 : 0)
        let data = (try? handle.readToEnd()) ?? Data()
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(3)
        return lines.joined(separator: " | ")
    }

    static func readSmallFile(_ path: String, limit: Int) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let bytes = try? readAtMost(limit, from: fd), !bytes.isEmpty else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
