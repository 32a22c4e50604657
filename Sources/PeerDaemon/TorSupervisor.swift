import Foundation
import LNPRPC
import LNPTransportTor
import Logging
import NIOCore

/// peerd's link to tor: starts the node's own tor when asked, keeps a control-port
/// connection (authentication, bootstrap progress, the onion service), and knows where
/// tor's SOCKS port is for `NodeDialer`. When the control connection is lost (tor stopped
/// or restarted) it reconnects with backoff and publishes the same onion again.
///
/// The first connection is bounded and its failure is the node's: lnpd refuses to start
/// with a tor it was told to use and cannot use. Only the implicit default (tor installed,
/// nothing configured) degrades to "no Tor" with a warning.
final class TorSupervisor: Sendable {
    /// Where the onion service points: tor's virtual port and our TCP listener.
    struct OnionTarget: Sendable {
        var virtualPort: UInt16
        var target: String
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private struct State {
        var status: TorStatus
        var socks: TorEndpoint?
        /// `socks` resolved, for the dialer.
        var socksAddress: SocketAddress?
        var controller: TorController?
        var launcher: TorLauncher?
        var serviceID: String?
        var loop: Task<Void, Never>?
        var stopped = false
    }

    let settings: TorSettings
    let dataDirectory: String
    private let logger: Logger
    private let onReady: @Sendable () -> Void
    private let state: LockedValue<State>

    static let connectTimeout: Duration = .seconds(10)
    static let launchTimeout: Duration = .seconds(60)

    /// `onReady` runs whenever tor becomes usable (bootstrapped, or back after a loss), so
    /// peerd can redial its onion peers at once instead of at their next backoff.
    init(settings: TorSettings, dataDirectory: String, logger: Logger, onReady: @escaping @Sendable () -> Void) {
        self.settings = settings
        self.dataDirectory = dataDirectory
        self.logger = logger
        self.onReady = onReady
        var status = TorStatus(state: .starting, torOnly: settings.torOnly)
        switch settings.source {
        case .none: status.state = .off
        case .external: status.mode = "external"
        case .launch: status.mode = "launched"
        }
        if case let .external(socks, _) = settings.source, let socks { status.socks = socks.description }
        state = LockedValue(State(status: status))
        if case let .external(socks, _) = settings.source, let socks { setSOCKS(socks) }
    }

    var status: TorStatus { state.withValue { $0.status } }
    var socksEndpoint: TorEndpoint? { state.withValue { $0.socks } }
    var socksAddress: SocketAddress? { state.withValue { $0.socksAddress } }

    /// Resolves the SOCKS endpoint once here (it is an IP, or a name such as localhost),
    /// not on every dial.
    private func setSOCKS(_ endpoint: TorEndpoint) {
        let address = try? SocketAddress.makeAddressResolvingHost(endpoint.host, port: Int(endpoint.port))
        state.withValue { state in
            state.socks = endpoint
            state.socksAddress = address
            state.status.socks = endpoint.description
        }
    }

    // MARK: - Start and stop

    func start(onion: OnionTarget?) async throws(Failure) {
        switch settings.source {
        case .none:
            return
        case let .external(socks, control):
            guard let control else {
                // SOCKS only: nothing to ask tor; connections will tell.
                update { $0.state = .ready; $0.summary = "using tor's SOCKS port \(socks?.description ?? "?") (no control port: progress unknown)" }
                logger.info("tor: using the SOCKS port at \(socks?.description ?? "?")")
                return
            }
            let endpoint = TorControlEndpoint(address: control)
            try await connectFirstTime(control: { endpoint }, onion: onion)
        case let .launch(binary, implicit):
            let launcher = TorLauncher(configuration: launchConfiguration(binary: binary))
            state.withValue { $0.launcher = launcher }
            let logger = self.logger
            Task {
                for await event in launcher.events {
                    switch event {
                    case let .started(pid, endpoint): logger.info("tor: our tor runs (pid \(pid), control port \(endpoint))")
                    case let .exitedUnexpectedly(pid, status, restartIn):
                        logger.warning("tor: our tor (pid \(pid)) \(status); restarting it in \(restartIn)")
                    case let .restartFailed(error, retryIn): logger.warning("tor: restarting our tor failed: \(error); next try in \(retryIn)")
                    case .stopped: return
                    }
                }
            }
            do {
                _ = try await launcher.start()
            } catch {
                let sentence = "could not start tor (\(binary)): \(error)"
                if implicit {
                    logger.warning("tor: \(sentence); onion peers are unreachable until it runs (start lnpd with --no-tor to silence this)")
                    update { $0.state = .unavailable; $0.summary = sentence }
                    return
                }
                throw Failure(description: sentence)
            }
            logger.info("tor: started our own tor (data directory \(launcher.configuration.torDirectory))")
            do {
                try await connectFirstTime(control: { launcher.endpoint }, onion: onion)
            } catch {
                if implicit {
                    logger.warning("tor: \(error.description)")
                    update { $0.state = .unavailable; $0.summary = error.description }
                    return
                }
                throw error
            }
        }
    }

    func stop() async {
        let (loop, controller, launcher, serviceID) = state.withValue { state in
            state.stopped = true
            let taken = (state.loop, state.controller, state.launcher, state.serviceID)
            state.loop = nil
            state.controller = nil
            return taken
        }
        loop?.cancel()
        if let controller {
            if let serviceID { try? await controller.delOnion(serviceID) }
            await controller.close()
        }
        await launcher?.stop()
    }

    private func launchConfiguration(binary: String) -> TorLauncher.Configuration {
        var configuration = TorLauncher.Configuration(nodeDataDirectory: dataDirectory, torExecutable: binary,
                                                      startTimeout: Self.launchTimeout)
        // Extra torrc lines for the node's own tor (bridges, or a private test network's
        // DirAuthority lines), one per line, `#` comments allowed.
        let extraPath = dataDirectory + "/" + Self.extraTorrcFileName
        if let text = try? String(contentsOfFile: extraPath, encoding: .utf8) {
            configuration.extraTorrcLines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.hasPrefix("#") && !$0.isEmpty }
        }
        return configuration
    }

    static let extraTorrcFileName = "torrc.extra"

    // MARK: - The control connection

    private func connectFirstTime(control: @escaping @Sendable () -> TorControlEndpoint?, onion: OnionTarget?) async throws(Failure) {
        let controller: TorController
        do {
            controller = try await connect(control: control, onion: onion)
        } catch {
            update { $0.state = .unavailable; $0.summary = error.description }
            throw error
        }
        let loop = Task { [self] in await supervise(controller, control: control, onion: onion) }
        state.withValue { $0.loop = loop }
    }

    /// One control connection: authenticate, learn the SOCKS port and bootstrap progress,
    /// publish the onion service. Bounded by `connectTimeout` per step.
    private func connect(control: @Sendable () -> TorControlEndpoint?, onion: OnionTarget?) async throws(Failure) -> TorController {
        guard let endpoint = control() else { throw Failure(description: "tor's control port is not known yet") }
        let controller: TorController
        do {
            controller = try await TorController.connect(address: endpoint.address, timeout: Self.connectTimeout)
        } catch {
            throw Failure(description: error.description)
        }
        do {
            // The cookie is read anew on every connection: tor writes a new one when it restarts.
            _ = try await controller.authenticate(cookiePath: settings.cookiePath ?? endpoint.cookiePath, password: settings.password)
            let version = try await controller.version()
            try await controller.setEvents(["STATUS_CLIENT", "HS_DESC"])
            let phase = try await controller.bootstrapPhase()
            var socks = socksEndpoint
            if case let .external(configured, _) = settings.source, let configured {
                socks = configured
            } else {
                let listeners = try await controller.socksListeners()
                guard let first = listeners.first else {
                    throw Failure(description: "tor at \(endpoint) has no SocksPort, so the node cannot reach onion services through it")
                }
                do {
                    socks = try TorEndpoint(parsing: first)
                } catch {
                    throw Failure(description: "tor at \(endpoint) reports a SOCKS listener \(first) the node cannot use: \(error)")
                }
            }
            var onionAddress: String?
            var serviceID: String?
            if let onion {
                let service = try await controller.addPersistentOnion(keyDirectory: dataDirectory, virtualPort: onion.virtualPort, target: onion.target)
                serviceID = service.serviceID
                let address = "\(service.hostName):\(onion.virtualPort)"
                onionAddress = address
                logger.info("tor: onion service \(address) added\(service.isNewKey ? " (new key saved in the data directory)" : ""); waiting for tor to publish it")
            }
            if let socks { setSOCKS(socks) }
            update { status in
                status.state = phase.progress >= 100 ? .ready : .bootstrapping
                status.bootstrapProgress = UInt8(clamping: phase.progress)
                status.summary = phase.summary
                status.onion = onionAddress
                status.onionReachable = false
            }
            state.withValue { state in
                state.controller = controller
                state.serviceID = serviceID
            }
            logger.info("tor: connected to tor \(version) at \(endpoint); bootstrapped \(phase.progress) % (\(phase.summary)); SOCKS \(socks?.description ?? "?")")
            if phase.progress >= 100 { onReady() }
            return controller
        } catch let failure as Failure {
            await controller.close()
            throw failure
        } catch let error as TorControlError {
            await controller.close()
            throw Failure(description: error.description)
        } catch {
            await controller.close()
            throw Failure(description: "\(error)")
        }
    }

    /// Follows tor's events until the control connection ends, then reconnects with
    /// backoff (and publishes the onion again) until `stop`.
    private func supervise(_ first: TorController, control: @escaping @Sendable () -> TorControlEndpoint?, onion: OnionTarget?) async {
        var controller = first
        while !Task.isCancelled {
            for await event in controller.events {
                handle(event)
            }
            if state.withValue({ $0.stopped }) || Task.isCancelled { return }
            logger.warning("tor: lost the control connection; reconnecting")
            update { $0.state = .unavailable; $0.summary = "lost the control connection to tor; reconnecting"; $0.onionReachable = false }
            state.withValue { $0.controller = nil }
            var delay = Duration.milliseconds(250)
            while true {
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    return
                }
                if state.withValue({ $0.stopped }) { return }
                do {
                    controller = try await connect(control: control, onion: onion)
                    break
                } catch {
                    update { $0.summary = "tor unavailable: \(error.description)" }
                    logger.debug("tor: reconnect failed: \(error.description)")
                    delay = min(delay * 2, .seconds(5))
                }
            }
        }
    }

    private func handle(_ event: TorEvent) {
        switch event {
        case let .bootstrap(phase):
            let progress = phase.progress, summary = phase.summary
            let (before, reachedNow) = state.withValue { state -> (Int, Bool) in
                let before = Int(state.status.bootstrapProgress)
                state.status.bootstrapProgress = UInt8(clamping: progress)
                state.status.summary = summary
                let ready = progress >= 100 && state.status.state != .ready
                state.status.state = progress >= 100 ? .ready : .bootstrapping
                return (before, ready)
            }
            if progress != before { logger.info("tor: bootstrapped \(progress) % (\(summary))") }
            if reachedNow { onReady() }
        case let .onionDescriptor(descriptor):
            let serviceID = descriptor.serviceID
            let ours = state.withValue { $0.serviceID == serviceID }
            guard ours else { return }
            if descriptor.action == .uploaded {
                let first = state.withValue { state -> Bool in
                    defer { state.status.onionReachable = true }
                    return !state.status.onionReachable
                }
                if first { logger.info("tor: onion service \(serviceID).onion is reachable (descriptor published)") }
            } else if descriptor.action == .failed {
                logger.debug("tor: publishing the onion descriptor failed on one directory; tor retries")
            }
        default:
            break
        }
    }

    private func update(_ change: (inout TorStatus) -> Void) {
        state.withValue { change(&$0.status) }
    }
}
