import LNPBus
import Testing

@Suite("Events and readiness")
struct EventTests {
    @Test("events reach subscribers, filtered by method and in order", arguments: TransportKind.allCases)
    func filteredEvents(kind: TransportKind) async throws {
        try await withDeadline {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let server = try echoServer(bus, name: .msgd)
            try server.start()
            let onlyOnes = Locked<[BusMessage]>([])
            let everything = Locked<[BusMessage]>([])
            let filtered = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.msgd], methods: [1, 4]) { service, message in
                #expect(service == .msgd)
                onlyOnes.withLock { $0.append(message) }
            }
            let all = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.msgd], methods: nil) { _, message in
                everything.withLock { $0.append(message) }
            }
            try await filtered.waitUntilReady([.msgd], timeout: .seconds(5))
            try await all.waitUntilReady([.msgd], timeout: .seconds(5))

            let sent = [BusMessage(method: 1, payload: [1]), BusMessage(method: 2, payload: [2]),
                        BusMessage(method: 1, payload: [3]), BusMessage(method: 3, payload: []),
                        BusMessage(method: 4, payload: [5, 5])]
            for event in sent { server.publish(event) }
            #expect(await eventually { everything.current.count == sent.count })
            #expect(everything.current == sent)
            #expect(await eventually { onlyOnes.current.count == 3 })
            #expect(onlyOnes.current == sent.filter { [1, 4].contains($0.method) })
            #expect(!everything.current.contains { $0.method == BusMessage.readyMethod })

            filtered.close()
            all.close()
            server.close()
        }
    }

    @Test("waitUntilReady: the server starts after the subscriber", arguments: TransportKind.allCases)
    func serverStartsLater(kind: TransportKind) async throws {
        try await withDeadline {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let received = Locked<[BusMessage]>([])
            let subscriber = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.peerd], methods: nil) { _, message in
                received.withLock { $0.append(message) }
            }
            let server = try echoServer(bus, name: .peerd)
            let waiting = Task { () async throws in
                try await subscriber.waitUntilReady([.peerd], timeout: .seconds(8))
            }
            try await Task.sleep(for: .milliseconds(150))
            try server.start()
            try await waiting.value
            // Readiness means the subscription is live: the first event is not lost.
            server.publish(BusMessage(method: 11, payload: [1]))
            #expect(await eventually { received.current == [BusMessage(method: 11, payload: [1])] })
            subscriber.close()
            server.close()
        }
    }

    @Test("waitUntilReady: the server started before the subscriber (missed `ready`)", arguments: TransportKind.allCases)
    func serverStartedEarlier(kind: TransportKind) async throws {
        try await withDeadline {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let server = try echoServer(bus, name: .peerd)
            try server.start()
            let received = Locked<[BusMessage]>([])
            let subscriber = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.peerd], methods: [12]) { _, message in
                received.withLock { $0.append(message) }
            }
            try await subscriber.waitUntilReady([.peerd], timeout: .seconds(5))
            server.publish(BusMessage(method: 12, payload: [2]))
            #expect(await eventually { received.current == [BusMessage(method: 12, payload: [2])] })
            subscriber.close()
            server.close()
        }
    }

    @Test("waitUntilReady covers services not subscribed to, and fails at its deadline for an absent one")
    func readinessOfOtherServices() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            defer { bus.close() }
            let server = try echoServer(bus, name: .keyd)
            try server.start()
            let subscriber = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.msgd], methods: nil) { _, _ in }
            try await subscriber.waitUntilReady([.keyd], timeout: .seconds(5))
            await #expect(throws: BusError(.timeout(.lnpd, method: BusMessage.pingMethod, after: .milliseconds(250)))) {
                try await subscriber.waitUntilReady([.keyd, .lnpd], timeout: .milliseconds(250))
            }
            subscriber.close()
            server.close()
        }
    }

    @Test("one subscriber hears several services and knows which one spoke")
    func severalServices() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            defer { bus.close() }
            let keyd = try echoServer(bus, name: .keyd)
            let msgd = try echoServer(bus, name: .msgd)
            try keyd.start()
            try msgd.start()
            let received = Locked<[ServiceName: [UInt16]]>([:])
            let subscriber = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.keyd, .msgd], methods: nil) { service, message in
                received.withLock { $0[service, default: []].append(message.method) }
            }
            try await subscriber.waitUntilReady([.keyd, .msgd], timeout: .seconds(5))
            keyd.publish(BusMessage(method: 1))
            msgd.publish(BusMessage(method: 2))
            keyd.publish(BusMessage(method: 3))
            #expect(await eventually { received.current == [.keyd: [1, 3], .msgd: [2]] })
            subscriber.close()
            keyd.close()
            msgd.close()
        }
    }
}
