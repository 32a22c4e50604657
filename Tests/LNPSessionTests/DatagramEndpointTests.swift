import LNPCrypto
import LNPSession
import Testing

@Suite struct DatagramEndpointTests {
    @Test func aFloodOfActOnesStaysBoundedAndARealPeerStillGetsThrough() throws {
        let serverKey = PrivateKey.generate()
        var server = try DatagramEndpoint<Int>(localStatic: serverKey, maximumSessions: 64, maximumHalfOpen: 16)
        let now = ContinuousClock.now

        // Valid act ones from 200 addresses that never send act three (anyone who knows our key can make them).
        var answeredBytes = 0
        var floodBytes = 0
        for address in 1...200 {
            var flooder = try DatagramSession(role: .initiator(remoteStatic: serverKey.publicKey), localStatic: PrivateKey.generate())
            guard case let .send(actOne)? = flooder.start(now: now).first else { Issue.record("no act one"); return }
            floodBytes += actOne.count
            let answers = server.receive(actOne, from: address, now: now)
            #expect(answers.count == 1)
            for case let .send(answer, to) in answers {
                #expect(to == address)
                answeredBytes += answer.count
            }
            #expect(server.halfOpenCount <= 16)
        }
        #expect(answeredBytes <= floodBytes, "the endpoint answered with more bytes than it was sent")
        #expect(server.handshakesRefused == 200 - 16)

        // Garbage and transport datagrams from strangers leave no state.
        #expect(server.receive([0x10] + [UInt8](repeating: 1, count: 40), from: 999, now: now).isEmpty)
        #expect(server.receive([0x01] + [UInt8](repeating: 2, count: 50), from: 998, now: now).isEmpty)
        #expect(server.strayDatagrams == 2)
        #expect(server.sessionCount == 16)

        // A real peer completes its handshake and its message is delivered under its address.
        let clientKey = PrivateKey.generate()
        var client = try DatagramEndpoint<Int>(localStatic: clientKey)
        var toServer = try client.connect(to: 1, remoteStatic: serverKey.publicKey, now: now)
        var toClient: [DatagramEndpoint<Int>.Action] = []
        var serverEvents: [DatagramEndpoint<Int>.Action] = []
        while !toServer.isEmpty || !toClient.isEmpty {
            let forServer = toServer
            toServer = []
            for case let .send(datagram, _) in forServer {
                for action in server.receive(datagram, from: 500, now: now) {
                    if case .send = action { toClient.append(action) } else { serverEvents.append(action) }
                }
            }
            let forClient = toClient
            toClient = []
            for case let .send(datagram, _) in forClient { toServer += client.receive(datagram, from: 1, now: now) }
        }
        #expect(serverEvents.contains(.established(500, remoteStatic: clientKey.publicKey, epoch: 1)))
        let datagrams = try client.send([0, 42, 1, 2, 3], to: 1, now: now)
        #expect(datagrams.flatMap { server.receive($0, from: 500, now: now) } == [.deliver([0, 42, 1, 2, 3], from: 500)])

        // Half-open handshakes expire; the established one stays.
        let later = now + server.policy.halfOpenTimeout
        let expired = server.timerFired(now: later)
        #expect(expired.filter { if case .closed = $0 { true } else { false } }.count == 15)
        #expect(server.halfOpenCount == 0)
        #expect(server.session(for: 500)?.isEstablished == true)
    }
}
