import Foundation
import LNPTransport
import LNPTransportTor
import NodeDaemon
import PeerDaemon
import Testing

/// lnpd's options, in particular the Tor ones: what combinations mean and which are
/// refused with which sentence.
@Suite struct NodeConfigurationTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "lnp-config-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()
    /// An environment without tor anywhere on PATH (and LNP_TOR_BINARY pointing nowhere).
    let noTor = ["PATH": "/nonexistent", "LNP_TOR_BINARY": "/nonexistent/tor"]
    let onionPeer = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7@" + "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion:9735"
    let clearPeer = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7@127.0.0.1:9735"

    func resolve(_ flags: NodeConfiguration.Flags, environment: [String: String]? = nil, file: String? = nil) throws -> NodeConfiguration {
        if let file { try file.write(toFile: directory + "/lnpd.conf", atomically: true, encoding: .utf8) }
        return try NodeConfiguration.resolve(dataDirectory: directory, flags: flags, environment: environment ?? noTor)
    }

    func failure(_ flags: NodeConfiguration.Flags, environment: [String: String]? = nil, file: String? = nil) -> String {
        do {
            _ = try resolve(flags, environment: environment, file: file)
            return "(no error)"
        } catch {
            return "\(error)"
        }
    }

    @Test func withoutTorInstalledTheNodeRunsWithoutTor() throws {
        let configuration = try resolve(.init())
        #expect(configuration.tor.source == .none)
        #expect(configuration.listen.map(\.description) == ["0.0.0.0:9735"])
        var onion = NodeConfiguration.Flags()
        onion.connect = [onionPeer]
        #expect(failure(onion).contains("reaching an onion service needs tor"))
    }

    @Test func anInstalledTorIsLaunchedByDefault() throws {
        let fakeTor = directory + "/tor"
        _ = FileManager.default.createFile(atPath: fakeTor, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        let configuration = try resolve(.init(), environment: ["PATH": directory])
        #expect(configuration.tor.source == .launch(torBinary: fakeTor, implicit: true))
        var explicit = NodeConfiguration.Flags()
        explicit.torLaunch = true
        #expect(try resolve(explicit, environment: ["PATH": directory]).tor.source == .launch(torBinary: fakeTor, implicit: false))
        var off = NodeConfiguration.Flags()
        off.noTor = true
        #expect(try resolve(off, environment: ["PATH": directory]).tor.source == .none)
    }

    @Test func externalTorEndpoints() throws {
        var flags = NodeConfiguration.Flags()
        flags.torSocks = "127.0.0.1:9050"
        flags.torControl = "9051"
        let configuration = try resolve(flags)
        #expect(configuration.tor.source == .external(socks: TorEndpoint(host: "127.0.0.1", port: 9050),
                                                      control: .tcp(host: "127.0.0.1", port: 9051)))
        flags.torControl = "unix:/run/tor/control"
        #expect(try resolve(flags).tor.source == .external(socks: TorEndpoint(host: "127.0.0.1", port: 9050),
                                                           control: .unixSocket(path: "/run/tor/control")))
        flags.torControl = "9051"
        flags.torSocks = "127.0.0.1:99999"
        #expect(failure(flags).hasPrefix("--tor-socks 127.0.0.1:99999:"))
        flags.torSocks = nil
        flags.torCookie = directory + "/missing-cookie"
        #expect(failure(flags).contains("cannot read that file"))
    }

    @Test func torOnlyRefusesClearnet() throws {
        var flags = NodeConfiguration.Flags()
        flags.torOnly = true
        flags.torSocks = "127.0.0.1:9050"
        let configuration = try resolve(flags)
        #expect(configuration.tor.torOnly)
        #expect(configuration.listen.map(\.description) == ["127.0.0.1:9735"], "tor-only listens on loopback by default")
        flags.connect = [clearPeer]
        #expect(failure(flags).contains("only .onion peers can be reached"))
        flags.connect = [onionPeer]
        #expect(try resolve(flags).connect.count == 1)
        // A spool directory is no network connection: tor-only allows it.
        flags.connect = [onionPeer, "spool://\(onionPeer.prefix(66))@/media/stick/lnp"]
        #expect(try resolve(flags).connect.count == 2)
        flags.listen = ["0.0.0.0:9735"]
        #expect(failure(flags).contains("listens on loopback only"))
        var noTorAtAll = NodeConfiguration.Flags()
        noTorAtAll.torOnly = true
        #expect(failure(noTorAtAll).contains("tor is not installed"))
    }

    @Test func conflictingTorOptions() {
        var flags = NodeConfiguration.Flags()
        flags.noTor = true
        flags.onion = true
        #expect(failure(flags) == "--no-tor cannot be combined with --onion")
        var launch = NodeConfiguration.Flags()
        launch.torLaunch = true
        launch.torSocks = "9050"
        #expect(failure(launch).contains("cannot be combined with --tor-socks or --tor-control"))
        var onionWithoutControl = NodeConfiguration.Flags()
        onionWithoutControl.onion = true
        onionWithoutControl.torSocks = "9050"
        #expect(failure(onionWithoutControl).contains("--onion needs tor's control port"))
    }

    @Test func theConfigFileTakesTheSameTorOptionsAndFlagsWin() throws {
        let file = """
            tor-control = 127.0.0.1:9051
            onion = true
            tor-only = yes
            """
        let configuration = try resolve(.init(), file: file)
        #expect(configuration.tor.publishOnion && configuration.tor.torOnly)
        #expect(configuration.tor.source == .external(socks: nil, control: .tcp(host: "127.0.0.1", port: 9051)))
        var flags = NodeConfiguration.Flags()
        flags.torControl = "127.0.0.1:7000"
        #expect(try resolve(flags, file: file).tor.source == .external(socks: nil, control: .tcp(host: "127.0.0.1", port: 7000)))
        #expect(failure(.init(), file: "onion = maybe\n").contains("expected true or false"))
    }
}
