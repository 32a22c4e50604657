#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers

/// One tor child process. A dedicated thread waits for exactly this pid: it first waits
/// without reaping (`WNOWAIT`), so while the exit is being recorded the pid still names
/// our zombie and cannot be reused; signals are only sent under the same lock, before
/// the exit is recorded. So `kill` never hits a stranger that inherited the pid.
final class TorProcess: Sendable {
    let pid: pid_t
    private struct ExitState {
        var status: String?
        var handlers: [@Sendable (String) -> Void] = []
    }
    private let exit = NIOLockedValueBox(ExitState())

    private init(pid: pid_t) { self.pid = pid }

    static func spawn(executable: String, arguments: [String], outputPath: String) throws(TorLaunchError) -> TorProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Only stdin/stdout/stderr: a listening socket or key file the node opened without
        // O_CLOEXEC must not live on in tor (and keep a port open after the node is gone).
        Self.closeDescriptorsFromThree(&actions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The node ignores SIGPIPE (NIO) and may block signals in threads: tor must get the
        // default dispositions, or SIGTERM/SIGHUP would not work on it.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        // Its own process group: a Ctrl-C meant for the node reaches tor through the
        // node's orderly shutdown (or __OwningControllerProcess), not half-way through it.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = ProcessInfo.processInfo.environment.map { strdup("\($0)=\($1)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw .cannotStart(executable: executable, reason: String(cString: strerror(result))) }
        let process = TorProcess(pid: pid)
        Thread.detachNewThread { process.waitForExit() }
        return process
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc 2.34+ has `posix_spawn_file_actions_addclosefrom_np`, but Swift's Glibc module
    /// does not declare it; without it (older libcs) the child keeps only what is CLOEXEC-free.
    private static func closeDescriptorsFromThree(_ actions: inout posix_spawn_file_actions_t) {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return }
        _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, 3)
    }

    private func waitForExit() {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
        let handlers = exit.withLockedValue { exit -> [@Sendable (String) -> Void] in
            var status: Int32 = 0
            var reaped: pid_t
            repeat { reaped = waitpid(pid, &status, 0) } while reaped < 0 && errno == EINTR
            let description: String
            if reaped != pid {
                description = "exited (status unknown: \(String(cString: strerror(errno))))"
            } else if status & 0x7f == 0 {
                description = "exited with status \((status >> 8) & 0xff)"
            } else {
                description = "was killed by signal \(status & 0x7f)"
            }
            exit.status = description
            defer { exit.handlers = [] }
            return exit.handlers
        }
        let status = exitStatus ?? ""
        for handler in handlers { handler(status) }
    }

    /// How the process ended ("exited with status 1", "was killed by signal 9"), nil while it runs.
    var exitStatus: String? { exit.withLockedValue { $0.status } }

    /// Calls `handler` once when the process has exited (at once if it already has).
    func onExit(_ handler: @escaping @Sendable (String) -> Void) {
        let status = exit.withLockedValue { exit -> String? in
            if exit.status == nil { exit.handlers.append(handler) }
            return exit.status
        }
        if let status { handler(status) }
    }

    func kill(_ signal: Int32) {
        exit.withLockedValue { exit in
            guard exit.status == nil else { return }
            _ = Glibc.kill(pid, signal)
        }
    }

    /// SIGTERM, then SIGKILL if tor has not exited within `timeout`; returns once reaped
    /// (or after a further bound, should even SIGKILL not be reaped in time).
    func terminate(within timeout: Duration) async {
        kill(SIGTERM)
        if await waitForExit(within: timeout) { return }
        kill(SIGKILL)
        _ = await waitForExit(within: .seconds(5))
    }

    /// Runs detached: a stop during the caller's cancellation must still wait for tor.
    private func waitForExit(within timeout: Duration) async -> Bool {
        await Task.detached { await self.pollForExit(within: timeout) }.value
    }

    private func pollForExit(within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while exitStatus == nil {
            guard ContinuousClock.now < deadline else { return false }
            // The reaper thread records the exit; a short poll keeps this free of
            // continuations that a cancelled caller could leak.
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }
}
