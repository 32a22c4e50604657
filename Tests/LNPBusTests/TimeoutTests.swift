import LNPBus
import Testing

@Suite("Timeouts")
struct TimeoutTests {
    @Test("no service listening: the request ends at its deadline", arguments: TransportKind.allCases)
    func absentService(kind: TransportKind) async throws {
        try await withDeadline {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .peerd)
            let clock = ContinuousClock()
            let started = clock.now
            do throws(BusError) {
                _ = try await client.request(BusMessage(method: 5), timeout: .milliseconds(300))
                Issue.record("expected a timeout")
            } catch {
                switch (kind, error.kind) {
                case (.inproc, .timeout(.peerd, 5, .milliseconds(300))):
                    break  // libzmq reports no connection state for inproc
                case (.ipc, .serviceUnavailable(.peerd)), (.tcp, .serviceUnavailable(.peerd)):
                    break
                default:
                    Issue.record("unexpected \(error)")
                }
                #expect(!error.description.isEmpty)
            }
            #expect(clock.now - started >= .milliseconds(300))
            client.close()
        }
    }

    @Test("a service that never replies: the request times out", arguments: TransportKind.allCases)
    func silentService(kind: TransportKind) async throws {
        try await withDeadline {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let held = Locked<[BusResponder]>([])
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .keyd) { _, responder in
                held.withLock { $0.append(responder) }
            }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            await #expect(throws: BusError(.timeout(.keyd, method: 9, after: .milliseconds(200)))) {
                _ = try await client.request(BusMessage(method: 9), timeout: .milliseconds(200))
            }
            // A reply after the deadline is dropped; the client keeps working.
            held.withLock { $0.forEach { $0.reply([1]) } }
            try await client.ping(timeout: .seconds(5))
            client.close()
            server.close()
        }
    }
}
