#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import LNPTransportTor
import NIOConcurrencyHelpers
import Testing

/// Every event a launcher reported, collected in the background.
final class LauncherEventRecorder: Sendable {
    private let events = NIOLockedValueBox<[TorLauncherEvent]>([])
    private let task: Task<Void, Never>

    init(_ launcher: TorLauncher) {
        let events = self.events
        task = Task { for await event in launcher.events { events.withLockedValue { $0.append(event) } } }
    }

    var all: [TorLauncherEvent] { events.withLockedValue { $0 } }

    func waitFor(_ what: String, timeout: Duration = .seconds(15), _ matches: (TorLauncherEvent) -> Bool) async throws -> TorLauncherEvent {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let event = all.first(where: matches) { return event }
            guard ContinuousClock.now < deadline else { throw TorControlFixtureTimeout(what: "\(what); events so far: \(all)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

private func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

@Suite struct TorLauncherTests {
    private func configuration(_ directory: String, extra: [String] = TorControlFixture.offlineTorrcLines) -> TorLauncher.Configuration {
        TorLauncher.Configuration(nodeDataDirectory: directory, extraTorrcLines: extra, startTimeout: .seconds(15),
                                  stopTimeout: .seconds(3), initialRestartDelay: .milliseconds(100))
    }

    @Test func startsRestartsAfterKillAndStops() async throws {
        // A space in the path: the generated torrc must quote it.
        let directory = makeTorControlTestDirectory("launcher with space")
        defer { removeTorControlTestDirectory(directory) }
        let launcher = TorLauncher(configuration: configuration(directory))
        let recorder = LauncherEventRecorder(launcher)
        // A descriptor without O_CLOEXEC, as a careless library might leave one.
        var leaky: [Int32] = [0, 0]
        #expect(pipe(&leaky) == 0)
        defer { close(leaky[0]); close(leaky[1]) }
        let leakyTarget = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(leaky[0])")
        do {
            let started = ContinuousClock.now
            let endpoint = try await launcher.start()
            let startup = ContinuousClock.now - started
            let firstPID = try #require(launcher.pid)
            let torDescriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(firstPID)/fd").compactMap {
                try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(firstPID)/fd/\($0)")
            }
            #expect(!torDescriptors.isEmpty)
            #expect(!torDescriptors.contains(leakyTarget), "tor inherited \(leakyTarget)")
            guard case .tcp("127.0.0.1", _) = endpoint.address else {
                Issue.record("the launcher's tor listens on 127.0.0.1, not \(endpoint)")
                await launcher.stop()
                return
            }
            #expect(endpoint.cookiePath == directory + "/tor/control_auth_cookie")
            print("tor launcher: control port open after \(startup)")

            var status = stat()
            #expect(stat(directory + "/tor", &status) == 0 && status.st_mode & 0o777 == 0o700)
            let torrc = try String(contentsOfFile: directory + "/tor/torrc", encoding: .utf8)
            #expect(torrc.contains("__OwningControllerProcess \(getpid())"))
            #expect(torrc.contains(TorControlFixture.offlineTorrcLines[0]))

            // The endpoint works: cookie authentication and the SOCKS port tor chose.
            let controller = try await TorController.connect(address: endpoint.address)
            #expect(try await controller.authenticate(cookiePath: endpoint.cookiePath) == .safeCookie)
            let socks = try await controller.socksListeners()
            #expect(socks.count == 1 && socks[0].hasPrefix("127.0.0.1:"), "\(socks)")

            // kill -9: the launcher notices, reports, restarts on a new control port.
            kill(firstPID, SIGKILL)
            let exited = try await recorder.waitFor("the exit report") {
                if case .exitedUnexpectedly(firstPID, _, _) = $0 { true } else { false }
            }
            #expect(exited == .exitedUnexpectedly(pid: firstPID, status: "was killed by signal 9", restartIn: .milliseconds(100)))
            // The old controller learns its tor is gone instead of waiting.
            var events = controller.events.makeAsyncIterator()
            #expect(await events.next() == nil)
            let restarted = try await recorder.waitFor("the restart") {
                if case let .started(pid, _) = $0 { pid != firstPID } else { false }
            }
            guard case let .started(secondPID, secondEndpoint) = restarted else { return }
            let previousLog = try String(contentsOfFile: directory + "/tor/tor.log.previous", encoding: .utf8)
            #expect(previousLog.contains("Bootstrapped 0%"), "the killed tor's log is kept")
            #expect(launcher.pid == secondPID)
            #expect(isAlive(secondPID))
            #expect(secondEndpoint != endpoint, "a restarted tor has a new control port")
            let again = try await TorController.connect(to: secondEndpoint)
            #expect(try await again.version().hasPrefix("0.4."))
            await again.close()

            // Dying young again doubles the delay before the next restart.
            kill(secondPID, SIGKILL)
            let exitedAgain = try await recorder.waitFor("the second exit report") {
                if case .exitedUnexpectedly(secondPID, _, _) = $0 { true } else { false }
            }
            #expect(exitedAgain == .exitedUnexpectedly(pid: secondPID, status: "was killed by signal 9", restartIn: .milliseconds(200)))
            let third = try await recorder.waitFor("the second restart") {
                if case let .started(pid, _) = $0 { pid != firstPID && pid != secondPID } else { false }
            }
            guard case let .started(thirdPID, _) = third else { return }
            #expect(!isAlive(secondPID))

            let stopStarted = ContinuousClock.now
            await launcher.stop()
            print("tor launcher: stopped in \(ContinuousClock.now - stopStarted)")
            #expect(!isAlive(thirdPID))
            #expect(launcher.pid == nil)
            _ = try await recorder.waitFor("the stop report") { $0 == .stopped }
            // Stopping is not an unexpected exit: no restart follows.
            #expect(recorder.all.filter { if case .exitedUnexpectedly = $0 { true } else { false } }.count == 2)
        } catch {
            await launcher.stop()
            throw error
        }
    }

    @Test func aFailedRestartIsReportedAndRetried() async throws {
        let directory = makeTorControlTestDirectory("launcher-retry")
        defer { removeTorControlTestDirectory(directory) }
        var config = configuration(directory)
        config.initialRestartDelay = .milliseconds(300)
        let launcher = TorLauncher(configuration: config)
        let recorder = LauncherEventRecorder(launcher)
        do {
            _ = try await launcher.start()
            let firstPID = try #require(launcher.pid)
            // A directory where the torrc must be written: the next launch cannot prepare it.
            let torrc = directory + "/tor/torrc"
            unlink(torrc)
            mkdir(torrc, 0o700)
            try Data("x".utf8).write(to: URL(fileURLWithPath: torrc + "/blocker"))
            kill(firstPID, SIGKILL)
            let failed = try await recorder.waitFor("the failed restart") {
                if case .restartFailed = $0 { true } else { false }
            }
            guard case let .restartFailed(error, retryIn) = failed, case .cannotPrepareDirectory = error else {
                Issue.record("expected cannotPrepareDirectory, got \(failed)")
                await launcher.stop()
                return
            }
            #expect(retryIn == .milliseconds(600))
            try FileManager.default.removeItem(atPath: torrc)
            _ = try await recorder.waitFor("the restart after the failure") {
                if case let .started(pid, _) = $0 { pid != firstPID } else { false }
            }
            #expect(launcher.pid != nil && launcher.pid != firstPID)
            await launcher.stop()
        } catch {
            await launcher.stop()
            throw error
        }
    }

    @Test func aTorrcErrorIsReportedWithTorsWords() async throws {
        let directory = makeTorControlTestDirectory("launcher-bad")
        defer { removeTorControlTestDirectory(directory) }
        let launcher = TorLauncher(configuration: configuration(directory, extra: TorControlFixture.offlineTorrcLines + ["NoSuchOption 1"]))
        defer { Task { await launcher.stop() } }
        do {
            _ = try await launcher.start()
            Issue.record("tor must refuse an unknown option")
        } catch {
            guard case let .exitedDuringStartup(status, logTail) = error else {
                Issue.record("expected exitedDuringStartup, got \(error)")
                return
            }
            #expect(status == "exited with status 1")
            #expect(logTail.contains("NoSuchOption"), "\(logTail)")
        }
        #expect(launcher.pid == nil)
    }

    @Test func extraLinesCannotSmuggleLineBreaks() async throws {
        let directory = makeTorControlTestDirectory("launcher-line")
        defer { removeTorControlTestDirectory(directory) }
        let launcher = TorLauncher(configuration: configuration(directory, extra: ["SocksPort 9050\nControlPort 9051"]))
        await #expect(throws: TorLaunchError.invalidExtraLine("SocksPort 9050\nControlPort 9051")) { try await launcher.start() }
    }

    @Test func torMissingFromPathIsAClearError() throws {
        #expect(throws: TorLaunchError.torNotInstalled(searchPath: "/nonexistent:/also/not")) {
            try TorLauncher.findOnPath("tor", searchPath: "/nonexistent:/also/not")
        }
        #expect(try TorLauncher.findOnPath("tor", searchPath: "/nonexistent:/usr/sbin:/usr/bin").hasSuffix("/tor"))
        #expect(TorLaunchError.torNotInstalled(searchPath: "/x").description.hasPrefix("tor is not installed"))
    }
}
