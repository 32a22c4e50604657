#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZeroMQ
import LNPBus
import LNPWire
import Testing

/// A raw libzmq socket driven directly by a test, to send what no bus node would.
final class RawSocket {
    let handle: UnsafeMutableRawPointer

    init(_ context: UnsafeMutableRawPointer, type: Int32) {
        handle = zmq_socket(context, type)!
        var linger: Int32 = 0
        zmq_setsockopt(handle, ZMQ_LINGER, &linger, 4)
        var timeout: Int32 = 5_000
        zmq_setsockopt(handle, ZMQ_RCVTIMEO, &timeout, 4)
    }

    func send(_ frames: [[UInt8]]) {
        for (index, frame) in frames.enumerated() {
            let flags = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            _ = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
        }
    }

    func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { zmq_recv(handle, $0.baseAddress, $0.count, 0) }
        return count < 0 ? nil : Array(buffer[0..<Int(count)])
    }

    func close() { zmq_close(handle) }
}

func frame(kind: UInt8, method: UInt16, id: UInt64, payload: [UInt8] = []) -> [UInt8] {
    var writer = WireWriter()
    writer.writeU8(kind)
    writer.writeU16(method)
    writer.writeU64(id)
    writer.writeBytes(payload)
    return writer.bytes
}

@Suite("Robustness and shutdown")
struct RobustnessTests {
    @Test("malformed requests from a raw socket are dropped with a log line and the server keeps serving")
    func malformedRequests() async throws {
        try await withDeadline {
            let bus = try TestBus(.ipc)
            defer { bus.close() }
            let calls = Locked<Int>(0)
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .keyd) { message, responder in
                calls.withLock { $0 += 1 }
                responder.reply(message.payload)
            }
            try server.start()
            let rawContext = zmq_ctx_new()!
            let raw = RawSocket(rawContext, type: ZMQ_DEALER)
            #expect(zmq_connect(raw.handle, bus.layout.rpcEndpoint(for: .keyd)) == 0)
            raw.send([[]])                                               // empty
            raw.send([[1, 0, 5]])                                        // shorter than the header
            raw.send([frame(kind: 9, method: 1, id: 1)])                 // unknown kind
            raw.send([frame(kind: 2, method: 1, id: 2, payload: [1])])   // a reply sent to a server
            raw.send([frame(kind: 1, method: 1, id: 3), [0xFF]])         // two frames
            raw.send([frame(kind: 1, method: 1, id: 4), [], [1]])        // three frames
            raw.send([frame(kind: 1, method: 0xFF77, id: 5)])            // unknown reserved method
            raw.send([frame(kind: 1, method: 6, id: 6, payload: [42])])  // a well-formed request
            // Only the reserved-method request and the well-formed one are answered, in order.
            #expect(raw.receive() == frame(kind: 3, method: 0xFF77, id: 5, payload: []).prefix(11) + failureBody(BusRemoteCode.unknownBusMethod, "keyd does not know bus method 65399"))
            #expect(raw.receive() == frame(kind: 2, method: 6, id: 6, payload: [42]))
            raw.close()
            zmq_ctx_term(rawContext)

            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            #expect(try await client.request(BusMessage(method: 2, payload: [1, 2]), timeout: .seconds(5)) == [1, 2])
            #expect(calls.current == 2)
            #expect(bus.log.contains("keyd: dropped a request"))
            #expect(bus.log.contains("unknown frame kind 9"))
            #expect(bus.log.contains("dropped a 2-part request"))
            #expect(bus.log.contains("dropped a 3-part request"))
            client.close()
            server.close()
        }
    }

    @Test("malformed events are dropped; well-formed ones still arrive")
    func malformedEvents() async throws {
        try await withDeadline {
            let bus = try TestBus(.ipc)
            defer { bus.close() }
            let received = Locked<[BusMessage]>([])
            let subscriber = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.gossipd], methods: nil) { _, message in
                received.withLock { $0.append(message) }
            }
            // A raw PUB in a context of its own stands in for gossipd's server.
            mkdir(bus.directory!.path + "/bus", 0o700)
            let rawContext = zmq_ctx_new()!
            let publisher = RawSocket(rawContext, type: ZMQ_PUB)
            #expect(zmq_bind(publisher.handle, bus.layout.eventEndpoint(for: .gossipd)) == 0)
            let isReady = Locked<Bool>(false)
            let waiting = Task { () async throws in
                try await subscriber.waitUntilReady([.gossipd], timeout: .seconds(5))
                isReady.withLock { $0 = true }
            }
            let ready = frame(kind: 4, method: BusMessage.readyMethod, id: 0)
            #expect(await eventually {
                publisher.send([ready])  // until the subscription has reached the PUB
                return isReady.current
            })
            try await waiting.value
            publisher.send([[4, 0]])
            publisher.send([frame(kind: 4, method: 3, id: 0), [1]])
            publisher.send([frame(kind: 2, method: 3, id: 0)])
            publisher.send([frame(kind: 4, method: 5, id: 0, payload: [9])])
            #expect(await eventually { !received.current.isEmpty })
            #expect(received.current == [BusMessage(method: 5, payload: [9])])
            #expect(bus.log.contains("dropped an event from gossipd"))
            #expect(bus.log.contains("dropped a 2-part event from gossipd"))
            // Events are numbered per method: a gap (events the PUB dropped) is logged.
            publisher.send([frame(kind: 4, method: 6, id: 1, payload: [1])])
            publisher.send([frame(kind: 4, method: 6, id: 4, payload: [4])])
            #expect(await eventually { received.current.count == 3 })
            #expect(bus.log.contains("lost 2 events of method 6 from gossipd"))
            publisher.close()
            zmq_ctx_term(rawContext)
            subscriber.close()
        }
    }

    @Test("a reply to a client that has gone is dropped (ROUTER_MANDATORY) and others are still served")
    func vanishedClient() async throws {
        try await withDeadline {
            let bus = try TestBus(.ipc)
            defer { bus.close() }
            let held = Locked<[BusResponder]>([])
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .keyd) { message, responder in
                if message.method == 1 {
                    held.withLock { $0.append(responder) }
                } else {
                    responder.reply(message.payload)
                }
            }
            try server.start()
            let leaving = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            await #expect(throws: BusError.self) {
                _ = try await leaving.request(BusMessage(method: 1), timeout: .milliseconds(100))
            }
            #expect(held.current.count == 1)
            leaving.close()
            let staying = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            try await staying.ping(timeout: .seconds(5))
            held.withLock { $0[0].reply([1]) }
            #expect(await eventually { bus.log.contains("has gone; reply dropped") })
            #expect(try await staying.request(BusMessage(method: 2, payload: [4]), timeout: .seconds(5)) == [4])
            staying.close()
            server.close()
        }
    }

    @Test("closing the context with nodes still open and requests waiting ends everything with .closed")
    func contextCloseEndsEverything() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            let held = Locked<[BusResponder]>([])
            let server = try BusServer(context: bus.context, layout: bus.layout, name: .keyd) { _, responder in
                held.withLock { $0.append(responder) }
            }
            try server.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            let subscriber = try BusSubscriber(context: bus.context, layout: bus.layout, services: [.keyd], methods: nil) { _, _ in }
            let request = Task { () async throws -> [UInt8] in
                try await client.request(BusMessage(method: 1), timeout: .seconds(60))
            }
            let waiting = Task { () async throws in
                try await subscriber.waitUntilReady([.keyd, .lnpd], timeout: .seconds(60))
            }
            #expect(await eventually { held.current.count == 1 })
            try await Task.sleep(for: .milliseconds(20))

            bus.close()

            let requested = await request.result
            #expect(throws: BusError(.closed)) { try requested.get() }
            let waited = await waiting.result
            #expect(throws: BusError(.closed)) { try waited.get() }
            await #expect(throws: BusError(.closed)) {
                _ = try await client.request(BusMessage(method: 1), timeout: .seconds(1))
            }
            #expect(throws: BusError(.closed)) {
                _ = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            }
            client.close()
            server.close()
            subscriber.close()
            bus.context.close()
            held.withLock { $0.removeAll() }
        }
    }

    @Test("close() is idempotent, works before start, and a handler may close its own server")
    func closeVariants() async throws {
        try await withDeadline {
            let bus = try TestBus(.inproc)
            defer { bus.close() }
            let unstarted = try echoServer(bus, name: .lnpd)
            unstarted.close()
            unstarted.close()
            #expect(throws: BusError(.closed)) { try unstarted.start() }

            let holder = Locked<BusServer?>(nil)
            let selfClosing = try BusServer(context: bus.context, layout: bus.layout, name: .keyd) { message, responder in
                responder.reply(message.payload)
                holder.current?.close()
            }
            holder.withLock { $0 = selfClosing }
            try selfClosing.start()
            let client = try BusClient(context: bus.context, layout: bus.layout, service: .keyd)
            #expect(try await client.request(BusMessage(method: 1, payload: [1]), timeout: .seconds(5)) == [1])
            selfClosing.close()
            holder.withLock { $0 = nil }
            client.close()
            client.close()
        }
    }

    @Test("two nodes in one process, same service names, different inproc namespaces, do not collide")
    func twoNodes() async throws {
        try await withDeadline {
            let context = try BusContext(logger: .discard)
            defer { context.close() }
            let first = BusLayout(transport: .inproc(namespace: uniqueNamespace("alice")))
            let second = BusLayout(transport: .inproc(namespace: uniqueNamespace("bob")))
            let alice = try BusServer(context: context, layout: first, name: .keyd) { _, responder in responder.reply(Array("alice".utf8)) }
            let bob = try BusServer(context: context, layout: second, name: .keyd) { _, responder in responder.reply(Array("bob".utf8)) }
            try alice.start()
            try bob.start()
            let toAlice = try BusClient(context: context, layout: first, service: .keyd)
            let toBob = try BusClient(context: context, layout: second, service: .keyd)
            #expect(try await toAlice.request(BusMessage(method: 1), timeout: .seconds(5)) == Array("alice".utf8))
            #expect(try await toBob.request(BusMessage(method: 1), timeout: .seconds(5)) == Array("bob".utf8))
            // A second server for the same endpoint in the same namespace is refused.
            let twin = try BusServer(context: context, layout: first, name: .keyd) { _, _ in }
            #expect(throws: BusError.self) { try twin.start() }
        }
    }
}

func failureBody(_ code: UInt16, _ message: String) -> [UInt8] {
    var writer = WireWriter()
    writer.writeU16(code)
    writer.writeU16(UInt16(message.utf8.count))
    writer.writeBytes(Array(message.utf8))
    return writer.bytes
}


