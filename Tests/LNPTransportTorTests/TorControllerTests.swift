#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import LNPTransportTor
import Testing

/// The control-port client against a real tor (Debian 0.4.9), offline, one tor per test.
@Suite struct TorControllerTests {
    private func connect(_ tor: TorControlFixture) async throws -> TorController {
        try await TorController.connect(host: "127.0.0.1", port: tor.controlPort, timeout: .seconds(2))
    }

    /// Runs `body` and returns its typed error, failing the test when it succeeds; also
    /// checks the failure came within `bound` (clear errors must not take long).
    private func expectFailure<T>(within bound: Duration = .seconds(10),
                                  _ body: () async throws(TorControlError) -> T) async -> TorControlError? {
        let started = ContinuousClock.now
        do {
            _ = try await body()
            Issue.record("expected a TorControlError")
            return nil
        } catch {
            #expect(ContinuousClock.now - started < bound, "\(error) took \(ContinuousClock.now - started)")
            return error
        }
    }

    @Test func safeCookieAuthenticatesAndGetInfoParses() async throws {
        try await withControlledTor(.cookie) { tor in
            let controller = try await connect(tor)
            defer { Task { await controller.close() } }
            let info = try await controller.protocolInfo()
            #expect(Set(info.authMethods) == ["COOKIE", "SAFECOOKIE"])
            #expect(info.cookieFile == tor.cookiePath)
            #expect(info.torVersion?.hasPrefix("0.4.") == true)
            // PROTOCOLINFO may be sent once before authenticating: use a fresh connection.
            let fresh = try await connect(tor)
            defer { Task { await fresh.close() } }
            #expect(try await fresh.authenticate() == .safeCookie)
            let version = try await fresh.version()
            #expect(version.hasPrefix("0.4.9"), "\(version)")
            let phase = try await fresh.bootstrapPhase()
            #expect((0...100).contains(phase.progress))
            #expect(!phase.tag.isEmpty && !phase.summary.isEmpty, "\(phase)")
            let listeners = try await fresh.socksListeners()
            #expect(listeners.count == 1)
            #expect(listeners.first?.hasPrefix("127.0.0.1:") == true, "\(listeners)")
            let values = try await fresh.getInfo(["version", "config-text"])
            #expect(values["config-text"]?.contains("ControlPort auto") == true, "data reply: \(values)")
        }
    }

    @Test func cookieAuthenticatesWhenSafeCookieIsNotUsed() async throws {
        try await withControlledTor(.cookie) { tor in
            let controller = try await connect(tor)
            defer { Task { await controller.close() } }
            #expect(try await controller.authenticate(cookiePath: tor.cookiePath, password: nil, ignoring: [.safeCookie]) == .cookie)
            #expect(try await controller.version().hasPrefix("0.4."))
        }
    }

    @Test func wrongCookieContentsAreRejectedWithBothCookieMethods() async throws {
        try await withControlledTor(.cookie) { tor in
            let forged = tor.directory + "/forged_cookie"
            try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: forged))
            for ignored: Set<TorAuthMethod> in [[], [.safeCookie]] {
                let controller = try await connect(tor)
                let error = await expectFailure { () async throws(TorControlError) in
                    try await controller.authenticate(cookiePath: forged, password: nil, ignoring: ignored)
                }
                #expect(error == .cookieRejected(path: forged))
                #expect(error?.description.contains("tor rejected the cookie") == true)
                // A failed authentication leaves no usable connection, and says so at once.
                let after = await expectFailure { () async throws(TorControlError) in try await controller.version() }
                #expect(after == .closedByController(command: "GETINFO"), "\(String(describing: after))")
            }
        }
    }

    @Test func missingCookieFileIsNamed() async throws {
        try await withControlledTor(.cookie) { tor in
            let controller = try await connect(tor)
            let missing = tor.directory + "/no-such-cookie"
            let error = await expectFailure { () async throws(TorControlError) in try await controller.authenticate(cookiePath: missing) }
            #expect(error == .cannotReadCookie(path: missing, reason: "No such file or directory"))
            #expect(error?.description == "cannot read tor's cookie file \(missing): No such file or directory")
        }
    }

    @Test func hashedPasswordRightWrongAndMissing() async throws {
        try await withControlledTor(.password("correct horse")) { tor in
            let right = try await connect(tor)
            defer { Task { await right.close() } }
            #expect(try await right.authenticate(password: "correct horse") == .hashedPassword)
            #expect(try await right.version().hasPrefix("0.4."))

            let wrong = try await connect(tor)
            let wrongError = await expectFailure { () async throws(TorControlError) in try await wrong.authenticate(password: "battery staple") }
            #expect(wrongError == .wrongPassword)
            #expect(wrongError?.description.hasPrefix("wrong control password") == true)

            let missing = try await connect(tor)
            let missingError = await expectFailure { () async throws(TorControlError) in try await missing.authenticate() }
            #expect(missingError == .passwordRequired)
            #expect(missingError?.description == "tor requires a password (--tor-password)")
        }
    }

    @Test func nullAuthentication() async throws {
        try await withControlledTor(.none) { tor in
            let controller = try await connect(tor)
            defer { Task { await controller.close() } }
            #expect(try await controller.authenticate(password: "ignored") == .null)
            #expect(try await controller.bootstrapPhase().progress < 100, "an offline tor cannot finish bootstrapping")
        }
    }

    @Test func closedPortSaysNothingListens() async throws {
        // A port nobody listens on.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = bind(fd, $0, length); _ = getsockname(fd, $0, &length) }
        }
        // Held, bound but not listening: refused, and no other test can take the port.
        defer { close(fd) }
        let port = Int(UInt16(bigEndian: address.sin_port))
        // The error's kind (refused, not timed out) is the proof of "at once"; the bound only
        // rules out a hang: a fully loaded parallel run has delayed continuations ~30 s here.
        let error = await expectFailure(within: .seconds(45)) { () async throws(TorControlError) in
            try await TorController.connect(host: "127.0.0.1", port: port, timeout: .seconds(2))
        }
        #expect(error == .notListening(host: "127.0.0.1", port: port))
        #expect(error?.description == "nothing is listening on the tor control port 127.0.0.1:\(port) — is tor running?")
    }

    @Test func unixControlSocket() async throws {
        try await withControlledTor(.cookie) { tor in
            let endpoint = TorControlEndpoint(address: .unixSocket(path: tor.controlSocketPath))
            let controller = try await TorController.connect(to: endpoint)
            defer { Task { await controller.close() } }
            #expect(try await controller.version().hasPrefix("0.4."))

            let missing = tor.directory + "/no-such.sock"
            let error = await expectFailure { () async throws(TorControlError) in
                try await TorController.connect(address: .unixSocket(path: missing))
            }
            #expect(error == .noControlSocket(path: missing, reason: "No such file or directory", permission: false))
            #expect(error?.description == "cannot connect to tor's control socket \(missing): No such file or directory — is tor running?")
        }
    }

    @Test func onionServiceKeepsItsNameWithTheSavedKey() async throws {
        try await withControlledTor(.cookie) { tor in
            let controller = try await connect(tor)
            defer { Task { await controller.close() } }
            try await controller.authenticate()
            let addStarted = ContinuousClock.now
            let first = try await controller.addOnion(key: nil, virtualPort: 9735, target: "127.0.0.1:9735")
            print("ADD_ONION NEW:ED25519-V3 answered in \(ContinuousClock.now - addStarted)")
            #expect(first.isNewKey)
            #expect(first.key.serviceID == first.serviceID)
            #expect(first.serviceID.utf8.count == 56)
            try first.key.save(toDirectory: tor.directory)
            try await controller.delOnion(first.serviceID)

            let saved = try #require(try OnionServiceKey.load(fromDirectory: tor.directory))
            #expect(saved.serviceID == first.serviceID)
            let again = try await controller.addOnion(key: saved, virtualPort: 9735, target: "127.0.0.1:9735")
            #expect(again.serviceID == first.serviceID)
            #expect(!again.isNewKey)

            // Adding the same key twice is tor's "Onion address collision".
            let collision = await expectFailure { () async throws(TorControlError) in
                try await controller.addOnion(key: saved, virtualPort: 9735, target: "127.0.0.1:9735")
            }
            guard case let .rejected(command, status, _) = collision else {
                Issue.record("expected a rejection, got \(String(describing: collision))")
                return
            }
            #expect(command == "ADD_ONION" && status == 550)
            // The secret key never appears in an error.
            #expect(collision?.description.contains(saved.torKeyBlob.dropFirst(11).prefix(20)) == false)
            try await controller.delOnion(first.serviceID)
        }
    }

    @Test func persistentOnionKeepsItsNameAcrossConnections() async throws {
        try await withControlledTor(.cookie) { tor in
            let keyDirectory = tor.directory + "/node"
            mkdir(keyDirectory, 0o700)
            let endpoint = TorControlEndpoint(host: "127.0.0.1", port: tor.controlPort, cookiePath: tor.cookiePath)
            // A first start: tor makes the key, it is stored.
            let first = try await TorController.connect(to: endpoint)
            let created = try await first.addPersistentOnion(keyDirectory: keyDirectory, virtualPort: 9735, target: "127.0.0.1:9735")
            #expect(created.isNewKey)
            #expect(access(keyDirectory + "/onion_v3.key", F_OK) == 0)
            // Closing the connection removes a service added without `detach`…
            await first.close()
            // …so a restarted node adds it again, from the stored key, under the same name.
            let second = try await TorController.connect(to: endpoint)
            defer { Task { await second.close() } }
            var again: OnionService?
            let deadline = ContinuousClock.now + .seconds(5)
            while again == nil {
                do {
                    again = try await second.addPersistentOnion(keyDirectory: keyDirectory, virtualPort: 9735, target: "127.0.0.1:9735")
                } catch let error as TorControlError {
                    // Tor removes the first connection's service when it notices the close.
                    guard case .rejected(_, 550, _) = error, ContinuousClock.now < deadline else { throw error }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(again?.serviceID == created.serviceID)
            #expect(again?.isNewKey == false)

            // A key directory that cannot hold the key: the new service is not left behind.
            let error = await expectFailure { () async throws(TorControlError) in
                try await second.addPersistentOnion(keyDirectory: tor.directory + "/missing", virtualPort: 1, target: "127.0.0.1:1")
            }
            guard case .onionKey(.cannotWrite) = error else {
                Issue.record("expected a key-writing error, got \(String(describing: error))")
                return
            }
            let current = try await second.getInfo(["onions/current"])["onions/current"]
            #expect(current == created.serviceID, "only the stored service remains: \(String(describing: current))")
        }
    }

    @Test func delOnionOfUnknownOrMalformedID() async throws {
        try await withControlledTor(.cookie) { tor in
            let controller = try await connect(tor)
            defer { Task { await controller.close() } }
            try await controller.authenticate()
            let other = try OnionServiceKey(torKeyBlob: OnionServiceKeyTests.torVectorBlob)
            let unknown = await expectFailure { () async throws(TorControlError) in try await controller.delOnion(other.serviceID) }
            #expect(unknown == .rejected(command: "DEL_ONION", status: 552, message: "Unknown Onion Service id"))
            let malformed = await expectFailure { () async throws(TorControlError) in
                try await controller.delOnion(String(repeating: "a", count: 56))
            }
            #expect(malformed == .rejected(command: "DEL_ONION", status: 512, message: "Malformed Onion Service id"))
            let injected = await expectFailure { () async throws(TorControlError) in try await controller.delOnion("abc\r\nSIGNAL HALT") }
            guard case .invalidArgument = injected else {
                Issue.record("a line break must never reach tor, got \(String(describing: injected))")
                return
            }
            // The connection still works after each error.
            #expect(try await controller.version().hasPrefix("0.4."))
        }
    }

    @Test func subscribedEventsArrive() async throws {
        try await withControlledTor(.cookie) { tor in
            let controller = try await connect(tor)
            defer { Task { await controller.close() } }
            try await controller.authenticate()
            try await controller.setEvents(["STATUS_CLIENT", "HS_DESC", "SIGNAL"])
            // Offline, tor emits no bootstrap events on its own; a reload is an event it
            // always reports, through the same path as STATUS_CLIENT and HS_DESC.
            _ = try await controller.sendExpectingSuccess("SIGNAL RELOAD", name: "SIGNAL")
            var iterator = controller.events.makeAsyncIterator()
            let event = await iterator.next()
            #expect(event == .other(keyword: "SIGNAL", text: "RELOAD"))
            let unknown = await expectFailure { () async throws(TorControlError) in try await controller.setEvents(["NO_SUCH_EVENT"]) }
            guard case .rejected(_, 552, _) = unknown else {
                Issue.record("expected 552 for an unknown event, got \(String(describing: unknown))")
                return
            }
        }
    }

    @Test func closingTheControllerEndsTheEventStream() async throws {
        try await withControlledTor(.cookie) { tor in
            let controller = try await connect(tor)
            try await controller.authenticate()
            await controller.close()
            var iterator = controller.events.makeAsyncIterator()
            #expect(await iterator.next() == nil)
            let error = await expectFailure { () async throws(TorControlError) in try await controller.version() }
            #expect(error == .closedByController(command: "GETINFO"))
        }
    }
}
