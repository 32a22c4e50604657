#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNPBus
import LNPWire
import Testing

@Suite("Requests and replies")
struct RequestReplyTests {
    @Test("a request gets its reply", arguments: TransportKind.allCases)
    func requestReply(kind: TransportKind) async throws {
        try await withDeadline {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let server = try echoServer(bus)
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)

            var writer = WireWriter()
            writer.writeU32(0xDEAD_BEEF)
            writer.writeBytes(Array("hello".utf8))
            let reply = try await client.request(BusMessage(method: 7, payload: writer.bytes), timeout: .seconds(5))
            #expect(reply == [0, 7] + writer.bytes)

            let empty = try await client.request(BusMessage(method: 0xFEFF), timeout: .seconds(5))
            #expect(empty == [0xFE, 0xFF])
            try await client.ping(timeout: .seconds(5))

            client.close()
            server.close()
        }
    }

    @Test("1,000 requests in flight at once are each answered with their own reply", arguments: TransportKind.allCases)
    func concurrentRequests(kind: TransportKind) async throws {
        try await withDeadline(20) {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let count = 1_000
            let held = Locked<[(BusMessage, BusResponder)]>([])
            // Replies only once every request has arrived, in reverse order and from
            // another thread, so all 1,000 are provably in flight together.
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .peerd) { message, responder in
                let all = held.withLock { list -> [(BusMessage, BusResponder)]? in
                    list.append((message, responder))
                    return list.count == count ? list : nil
                }
                if let all {
                    Task.detached {
                        for (message, responder) in all.reversed() {
                            responder.reply(message.payload + message.payload)
                        }
                    }
                }
            }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .peerd)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        var writer = WireWriter()
                        writer.writeU32(UInt32(index))
                        let reply = try await client.request(BusMessage(method: 1, payload: writer.bytes), timeout: .seconds(15))
                        #expect(reply == writer.bytes + writer.bytes)
                    }
                }
                try await group.waitForAll()
            }
            #expect(held.current.count == count)
            client.close()
            server.close()
        }
    }

    @Test("a failing handler's code and message reach the caller; a second answer is ignored")
    func remoteError() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            defer { bus.close() }
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .msgd) { message, responder in
                if message.method == 1 {
                    responder.fail(code: 42, message: "no such message: ✉︎ \(message.payload.count)")
                    responder.reply([1, 2, 3])
                    responder.fail(code: 43, message: "ignored")
                } else {
                    responder.reply(message.payload)
                    responder.fail(code: 44, message: "ignored")
                }
            }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .msgd)
            await #expect(throws: BusError(.remote(code: 42, message: "no such message: ✉︎ 3"))) {
                _ = try await client.request(BusMessage(method: 1, payload: [9, 9, 9]), timeout: .seconds(5))
            }
            let reply = try await client.request(BusMessage(method: 2, payload: [5]), timeout: .seconds(5))
            #expect(reply == [5])
            client.close()
            server.close()
        }
    }

    @Test("a handler that drops its responder unanswered fails the request at once")
    func droppedResponder() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            defer { bus.close() }
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .msgd) { _, _ in }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .msgd)
            let clock = ContinuousClock()
            let started = clock.now
            do throws(BusError) {
                _ = try await client.request(BusMessage(method: 3), timeout: .seconds(8))
                Issue.record("expected a failure")
            } catch {
                guard case let .remote(code, message) = error.kind else {
                    Issue.record("unexpected \(error)")
                    return
                }
                #expect(code == BusRemoteCode.unanswered)
                #expect(message.contains("msgd"))
            }
            #expect(clock.now - started < .seconds(8))
            client.close()
            server.close()
        }
    }

    @Test("reserved methods and oversized payloads are refused before sending")
    func refusedBeforeSending() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            defer { bus.close() }
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            await #expect(throws: BusError.self) {
                _ = try await client.request(BusMessage(method: BusMessage.pingMethod), timeout: .seconds(1))
            }
            let huge = [UInt8](repeating: 0, count: BusMessage.maximumPayloadSize + 1)
            await #expect(throws: BusError(.messageTooLarge(size: huge.count, limit: BusMessage.maximumPayloadSize))) {
                _ = try await client.request(BusMessage(method: 1, payload: huge), timeout: .seconds(1))
            }
            client.close()
        }
    }

    @Test("a cancelled request ends with .cancelled")
    func cancellation() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            defer { bus.close() }
            let held = Locked<[BusResponder]>([])
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .keyd) { _, responder in
                held.withLock { $0.append(responder) }  // keep the request open
            }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            let task = Task { () async throws -> [UInt8] in
                try await client.request(BusMessage(method: 1), timeout: .seconds(30))
            }
            try await Task.sleep(for: .milliseconds(50))
            task.cancel()
            let result = await task.result
            #expect(throws: BusError(.cancelled)) { try result.get() }
            client.close()
            server.close()
        }
    }

    @Test("a large payload (8 MiB) travels both ways", arguments: [TransportKind.inproc, .ipc])
    func largePayload(kind: TransportKind) async throws {
        try await withDeadline {
            let bus = try TestBus(kind)
            defer { bus.close() }
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .keyd) { message, responder in
                responder.reply(message.payload)
            }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            // Cheap to build and compare in a debug build: a constant fill with markers.
            var payload = [UInt8](repeating: 0xA5, count: 8 << 20)
            for index in stride(from: 0, to: payload.count, by: 1 << 16) { payload[index] = UInt8(truncatingIfNeeded: index >> 16) }
            let reply = try await client.request(BusMessage(method: 1, payload: payload), timeout: .seconds(10))
            #expect(reply.count == payload.count)
            let same = reply.withUnsafeBytes { r in payload.withUnsafeBytes { p in memcmp(r.baseAddress!, p.baseAddress!, p.count) == 0 } }
            #expect(same)
            client.close()
            server.close()
        }
    }
}

