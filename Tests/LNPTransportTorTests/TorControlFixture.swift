#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import LNPTransportTor
import Testing

struct TorControlFixtureTimeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// A fresh temporary directory, removed by `removeTorControlTestDirectory`.
func makeTorControlTestDirectory(_ label: String) -> String {
    var template = Array("/tmp/lnp-torctl-\(label)-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return path
}

func removeTorControlTestDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// A real tor, offline, with its control port on an automatic port and one way of
/// authenticating. Started and stopped with the launcher's own `TorProcess` (one reaper
/// thread per pid, signals only to that pid); `withControlledTor` stops it whatever the test does,
/// and tor also exits by itself if the test runner dies (`__OwningControllerProcess`).
final class TorControlFixture: Sendable {
    enum Authentication {
        case cookie
        case password(String)
        case none
    }

    /// Lines that keep a tor offline but working: a directory authority at a port where
    /// nothing listens, so tor starts in well under a second, opens its SOCKS and control
    /// ports and runs onion services (it never publishes them), without touching the network.
    static let offlineTorrcLines = [
        "DirAuthority offline orport=1 no-v2 v3ident=0000000000000000000000000000000000000001 127.0.0.1:1 0000000000000000000000000000000000000002",
        "ClientUseIPv6 0",
        "AddressDisableIPv6 1",
    ]

    let directory: String
    let controlPort: Int
    let cookiePath: String
    var controlSocketPath: String { directory + "/control.sock" }
    private let process: TorProcess

    private init(directory: String, controlPort: Int, process: TorProcess) {
        self.directory = directory
        self.controlPort = controlPort
        self.cookiePath = directory + "/control_auth_cookie"
        self.process = process
    }

    static func start(_ authentication: Authentication) async throws -> TorControlFixture {
        let directory = makeTorControlTestDirectory("fixture")
        var lines = [
            "DataDirectory \(directory)/data",
            "SocksPort auto",
            "ControlPort auto",
            "ControlPortWriteToFile \(directory)/control-port",
            "ControlSocket \(directory)/control.sock",
            "GeoIPFile /dev/null",
            "GeoIPv6File /dev/null",
            "__OwningControllerProcess \(getpid())",
        ] + offlineTorrcLines
        switch authentication {
        case .cookie:
            lines += ["CookieAuthentication 1", "CookieAuthFile \(directory)/control_auth_cookie"]
        case let .password(password):
            lines += ["HashedControlPassword \(try hashPassword(password))"]
        case .none:
            break
        }
        mkdir(directory + "/data", 0o700)
        try (lines.joined(separator: "\n") + "\n").write(toFile: directory + "/torrc", atomically: true, encoding: .utf8)
        let process = try TorProcess.spawn(executable: try TorLauncher.findOnPath("tor"),
                                           arguments: ["-f", directory + "/torrc", "--defaults-torrc", "/dev/null"],
                                           outputPath: directory + "/tor.log")
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            // "PORT=127.0.0.1:N\nUNIX_PORT=PATH\n" once the listeners are open.
            if let text = try? String(contentsOfFile: directory + "/control-port", encoding: .utf8),
               text.hasSuffix("\n"),
               let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PORT=") }),
               let port = Int(line.split(separator: ":").last ?? "") {
                return TorControlFixture(directory: directory, controlPort: port, process: process)
            }
            guard process.exitStatus == nil, ContinuousClock.now < deadline else {
                let log = (try? String(contentsOfFile: directory + "/tor.log", encoding: .utf8)) ?? ""
                await process.terminate(within: .seconds(5))
                removeTorControlTestDirectory(directory)
                throw TorControlFixtureTimeout(what: "tor's control port (log: \(log.suffix(400)))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// `tor --hash-password`: the HashedControlPassword value for `password`.
    static func hashPassword(_ password: String) throws -> String {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["tor", "--quiet", "--hash-password", password]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard let hash = text.split(separator: "\n").last(where: { $0.hasPrefix("16:") }) else {
            throw TorControlFixtureTimeout(what: "a hashed password from tor --hash-password (got '\(text)')")
        }
        return String(hash)
    }

    /// SIGTERM, SIGKILL after 5 s; returns once tor is gone.
    func stop() async {
        await process.terminate(within: .seconds(5))
        #expect(process.exitStatus != nil, "tor \(process.pid) must be gone")
        removeTorControlTestDirectory(directory)
    }
}

/// Runs `body` with a started fixture and always stops it.
func withControlledTor<T>(_ authentication: TorControlFixture.Authentication,
                _ body: (TorControlFixture) async throws -> T) async throws -> T {
    let tor = try await TorControlFixture.start(authentication)
    do {
        let result = try await body(tor)
        await tor.stop()
        return result
    } catch {
        await tor.stop()
        throw error
    }
}
