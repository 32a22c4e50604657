#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNPBus
import LNPCrypto
import Testing

@Suite("Security: CURVE, key files, socket file modes")
struct SecurityTests {
    @Test("tcp without CURVE keys is refused with a clear error by every kind of node")
    func tcpWithoutCurve() throws {
        let context = try BusContext(logger: .discard)
        defer { context.close() }
        let layout = BusLayout(transport: .tcp(host: "127.0.0.1", basePort: 41_000, curve: nil))
        func isInsecureEndpoint(_ error: any Error) -> Bool {
            guard let error = error as? BusError, case .insecureEndpoint = error.kind else { return false }
            return error.description.contains("CURVE")
        }
        #expect(performing: { try layout.validate() }, throws: isInsecureEndpoint)
        #expect(performing: { _ = try BusServer(context: context, layout: layout, name: .keyd) { _, _ in } }, throws: isInsecureEndpoint)
        #expect(performing: { _ = try BusClient(context: context, layout: layout, service: .keyd) }, throws: isInsecureEndpoint)
        #expect(performing: {
            _ = try BusSubscriber(context: context, layout: layout, services: [.keyd], methods: nil) { _, _ in }
        }, throws: isInsecureEndpoint)
    }

    @Test("a server on tcp needs the server secret key")
    func serverNeedsSecretKey() throws {
        let context = try BusContext(logger: .discard)
        defer { context.close() }
        let server = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let layout = BusLayout(transport: .tcp(host: "127.0.0.1", basePort: freeTCPBasePort(count: 14),
                                                   curve: CurveKeys(serverPublicKey: server.publicKey, client: client)))
        #expect {
            _ = try BusServer(context: context, layout: layout, name: .keyd) { _, _ in }
        } throws: { error in
            guard let error = error as? BusError, case .insecureEndpoint = error.kind else { return false }
            return true
        }
    }

    @Test("a client pinning the wrong server key gets a handshake failure, not a reply")
    func wrongServerKey() async throws {
        try await withDeadline {
            let bus = try TestBus(.tcp)
            defer { bus.close() }
            let server = try echoServer(bus)
            try server.start()
            let impostor = try CurveKeyPair.generate()
            guard case let .tcp(host, basePort, _) = bus.layout.transport, let keys = bus.keys else {
                Issue.record("not a tcp layout")
                return
            }
            // The client's own key is authorised; only the pinned server key is wrong.
            let wrongLayout = BusLayout(transport: .tcp(host: host, basePort: basePort,
                                                            curve: CurveKeys(serverPublicKey: impostor.publicKey, client: keys)))
            let client = try BusClient(context: bus.context, layout: wrongLayout, service: .keyd)
            do throws(BusError) {
                _ = try await client.request(BusMessage(method: 1), timeout: .milliseconds(1_500))
                Issue.record("a request went through with the wrong server key")
            } catch {
                guard case let .handshakeFailed(service, reason) = error.kind else {
                    Issue.record("unexpected \(error)")
                    return
                }
                #expect(service == .keyd)
                #expect(reason.contains("server public key"))
            }
            client.close()
            server.close()
        }
    }

    @Test("a client key the server has not authorised is refused; an authorised one is served")
    func clientAuthorisation() async throws {
        try await withDeadline {
            let directory = TemporaryDirectory()
            let log = CapturedLog()
            let context = try BusContext(logger: log.logger)
            defer {
                context.close()
                directory.remove()
            }
            let serverKeys = try CurveKeyPair.generate()
            let friend = try CurveKeyPair.generate()
            let stranger = try CurveKeyPair.generate()
            let basePort = freeTCPBasePort(count: 14)
            let serverLayout = BusLayout(transport: .tcp(host: "127.0.0.1", basePort: basePort,
                                                             curve: CurveKeys(server: serverKeys, authorizedClientKeys: [friend.publicKey])))
            let server = try BusServer(context: context, layout: serverLayout, name: .keyd) { message, responder in
                responder.reply(message.payload)
            }
            try server.start()

            let friendLayout = BusLayout(transport: .tcp(host: "127.0.0.1", basePort: basePort,
                                                             curve: CurveKeys(serverPublicKey: serverKeys.publicKey, client: friend)))
            let friendClient = try BusClient(context: context, layout: friendLayout, service: .keyd)
            #expect(try await friendClient.request(BusMessage(method: 1, payload: [7]), timeout: .seconds(5)) == [7])

            let strangerLayout = BusLayout(transport: .tcp(host: "127.0.0.1", basePort: basePort,
                                                               curve: CurveKeys(serverPublicKey: serverKeys.publicKey, client: stranger)))
            let strangerClient = try BusClient(context: context, layout: strangerLayout, service: .keyd)
            do throws(BusError) {
                _ = try await strangerClient.request(BusMessage(method: 1, payload: [8]), timeout: .milliseconds(1_500))
                Issue.record("an unauthorised client was served")
            } catch {
                guard case let .handshakeFailed(_, reason) = error.kind else {
                    Issue.record("unexpected \(error)")
                    return
                }
                #expect(reason.contains("refused this client's CURVE key"))
            }
            #expect(log.contains("refused CURVE client key \(stranger.publicKeyHex)"))
            // The stranger cannot subscribe to events either.
            let heard = Locked<Int>(0)
            let eavesdropper = try BusSubscriber(context: context, layout: strangerLayout, services: [.keyd], methods: nil) { _, _ in
                heard.withLock { $0 += 1 }
            }
            await #expect(throws: BusError.self) {
                try await eavesdropper.waitUntilReady([.keyd], timeout: .milliseconds(300))
            }
            server.publish(BusMessage(method: 3))
            #expect(heard.current == 0)
            eavesdropper.close()
            strangerClient.close()
            friendClient.close()
            server.close()
        }
    }

    @Test("the key file is created with mode 0600, reloads identically, and is refused when exposed or tampered with")
    func keyFile() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/" + CurveKeyPair.fileName
        let created = try CurveKeyPair.loadOrCreate(dataDirectory: directory.path)
        #expect(fileMode(path)?.isRegular == true)
        #expect(fileMode(path)?.permissions == 0o600)
        let loaded = try CurveKeyPair.loadOrCreate(path: path)
        #expect(loaded.publicKey == created.publicKey)
        #expect(loaded.secretKey.isEqual(to: created.secretKey))
        #expect(created.publicKey.count == 32)

        chmod(path, 0o644)
        #expect {
            _ = try CurveKeyPair.load(path: path)
        } throws: { error in
            guard let error = error as? BusError, case let .keyFile(_, reason) = error.kind else { return false }
            return reason.contains("chmod 600")
        }
        chmod(path, 0o600)

        let other = try CurveKeyPair.generate()
        let tamperedPath = directory.path + "/tampered.key"
        let text = "public \(other.publicKeyHex)\nsecret \(Hex.encode(created.secretKey.exportBytes()))\n"
        let fd = open(tamperedPath, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
        #expect(throws: BusError.self) { _ = try CurveKeyPair.load(path: tamperedPath) }
        #expect(throws: BusError(.keyFile(path: directory.path + "/missing.key", "does not exist"))) {
            _ = try CurveKeyPair.load(path: directory.path + "/missing.key")
        }
    }

    @Test("ipc socket files are sockets with mode 0600 in a 0700 directory, gone after close")
    func ipcSocketModes() async throws {
        try await withDeadline {
            let bus = try TestBus(.ipc)
            defer { bus.close() }
            let server = try echoServer(bus)
            try server.start()
            let base = bus.directory!.path + "/bus"
            #expect(fileMode(base)?.permissions == 0o700)
            for file in ["bus-keyd.rpc", "bus-keyd.events"] {
                let mode = fileMode(base + "/" + file)
                #expect(mode?.isSocket == true, "\(file)")
                #expect(mode?.permissions == 0o600, "\(file)")
            }
            #expect(bus.layout.rpcEndpoint(for: .keyd) == "ipc://\(base)/bus-keyd.rpc")
            server.close()
            // libzmq removes the files from its I/O thread, shortly after the close.
            #expect(await eventually { fileMode(base + "/bus-keyd.rpc") == nil })
        }
    }

    @Test("a second server on a live ipc endpoint is refused; after the first closes it may start")
    func ipcEndpointTaken() async throws {
        try await withDeadline {
            let bus = try TestBus(.ipc)
            defer { bus.close() }
            let first = try echoServer(bus)
            try first.start()
            let second = try echoServer(bus)
            #expect {
                try second.start()
            } throws: { error in
                (error as? BusError)?.description.contains("already serves keyd") == true
            }
            first.close()
            let third = try echoServer(bus)
            try third.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            #expect(try await client.request(BusMessage(method: 1, payload: [3]), timeout: .seconds(5)) == [0, 1, 3])
            client.close()
            third.close()
            second.close()
        }
    }
}

