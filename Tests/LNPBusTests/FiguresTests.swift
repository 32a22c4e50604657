import LNPBus
import LNPWire
import Testing

/// Prints rough throughput figures as JSON lines (debug build, shared machine: no
/// assertions on them). Alongside the other suites the numbers mostly measure
/// contention; run alone (`swift test --filter Figures`) for meaningful ones. The
/// release figures come from the `lnp-bus-bench` executable.
@Suite("Figures", .serialized)
struct FiguresTests {
    @Test("request/reply, 100 KB and batched-message rates", arguments: [TransportKind.inproc, .ipc])
    func figures(kind: TransportKind) async throws {
        try await withDeadline(20) {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .msgd) { message, responder in
                if message.method == 3 {
                    var reader = WireReader(message.payload)
                    var count: UInt32 = 0
                    while let length = try? reader.readU16(), (try? reader.skip(Int(length))) != nil { count += 1 }
                    var writer = WireWriter()
                    writer.writeU32(count)
                    responder.reply(writer.bytes)
                } else {
                    responder.reply(message.payload)
                }
            }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .msgd)
            try await client.ping(timeout: .seconds(5))
            let clock = ContinuousClock()

            func rate(_ payload: [UInt8], method: UInt16 = 1, total: Int, concurrency: Int) async throws -> Double {
                let start = clock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<concurrency {
                        group.addTask {
                            for _ in 0..<(total / concurrency) {
                                _ = try await client.request(BusMessage(method: method, payload: payload), timeout: .seconds(10))
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let (seconds, attoseconds) = (clock.now - start).components
                return Double(total / concurrency * concurrency) / (Double(seconds) + Double(attoseconds) / 1e18)
            }
            func emit(_ name: String, _ value: Double, _ unit: String) {
                print("{\"name\":\"bus.debug.\(kind).\(name)\",\"value\":\(Int(value)),\"unit\":\"\(unit)\"}")
            }

            let small = [UInt8](repeating: 1, count: 100)
            emit("rtt.100", try await rate(small, total: 2_000, concurrency: 1), "req/s")
            emit("rtt.100.pipelined64", try await rate(small, total: 20_000, concurrency: 64), "req/s")
            let large = [UInt8](repeating: 2, count: 100_000)
            emit("echo.100k", try await rate(large, total: 500, concurrency: 1) * 0.2, "MB/s")
            var writer = WireWriter(capacity: 102_000)
            for _ in 0..<1_000 {
                writer.writeU16(100)
                writer.writeBytes(small)
            }
            emit("batch.1000x100", try await rate(writer.bytes, method: 3, total: 200, concurrency: 4) * 1_000, "msg/s")
            client.close()
            server.close()
        }
    }
}
