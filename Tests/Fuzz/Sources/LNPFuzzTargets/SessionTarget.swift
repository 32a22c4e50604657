import LNPCrypto
import LNPSession
import LNPWire

/// `session`: a whole `PeerSession` (handshake, `init` exchange, message stream, the
/// switch to large frames). The first byte's low bit picks the mode.
///
/// Mode 0 (`raw`): a session with the BOLT-8 vector keys is fed the rest of the input as
/// link bytes, in chunks (byte 1: bit 0 = initiator or responder, bit 1 = whether our init
/// offers large frames, bit 2 = an initiator that never called start(); bytes 2-5: chunk
/// pattern). The vector's acts, and after them the
/// spec's encrypted "hello" frames, are valid link data, so the fuzzer starts from real
/// handshakes. Checked: the handshake writes exactly the spec's acts and establishes only
/// with the spec's peer; `handshakeBytesPending` counts down with the bytes fed; the first
/// message must be an init (else the precise error); once a call throws, the session stays
/// failed.
///
/// Mode 1 (`established`): a real handshake between the vector's initiator and a responder
/// session is completed in process (once; the sessions are values, so each execution starts
/// from a copy). The input then describes plaintext messages (`planMessages`, after byte 1:
/// bit 0 = our init offers large frames, bit 1 = a small local size limit, and a 4-byte chunk
/// pattern) that the initiator encrypts with its real transport keys, switching to large
/// frames exactly when both inits offer them. Checked: the first message is parsed as the
/// peer's init exactly as `Message.decode` parses it (or fails with the precise error),
/// large frames start exactly when both sides offer them, every later message is delivered
/// intact, oversized ones fail with `.messageTooLarge`, and every delivered message echoed
/// back with `PeerSession.encrypt` decrypts on the initiator's side.
public enum SessionTarget {
    public static func prepare() {
        _ = connections
    }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        if input.byte() & 1 == 0 {
            raw(&input)
        } else {
            established(&input)
        }
    }

    static func localInit(largeFrames: Bool) -> InitMessage {
        var features = FeatureVector(features: [.varOnionOptin, .paymentSecret, .basicMPP])
        if largeFrames { features.set(Feature.lnpLargeFrames.oddBit) }
        return InitMessage(features: features, networks: [[UInt8](repeating: 0x6f, count: 32)])
    }

    // MARK: mode 0

    static func raw(_ input: inout FuzzInput) {
        let options = input.byte()
        let pattern = input.take(4)
        let data = input.rest()
        let isInitiator = options & 1 != 0
        let ourInit = localInit(largeFrames: options & 2 != 0)
        var session: PeerSession
        var expectedWrites: [[UInt8]]
        if isInitiator {
            session = PeerSession(
                role: .initiator(remoteStatic: Bolt8Vector.responderStatic.publicKey), localStatic: Bolt8Vector.initiatorStatic,
                localInit: ourInit, ephemeral: Bolt8Vector.initiatorEphemeral)
            if options & 4 != 0 {
                // Receiving before start() is a caller error that ends the session.
                do {
                    _ = try session.receive(data)
                    fuzzFailure("an initiator received bytes before start()")
                } catch {
                    fuzzCheck(error == .notReady("the initiator must call start() before receiving"), "receive before start: \(error)")
                }
                expectFailed(&session)
                return
            }
            do {
                let actOne = try session.start()
                fuzzCheck(actOne == Bolt8Vector.actOne, "initiator session's act one differs from the vector")
            } catch {
                fuzzFailure("start() failed: \(error)")
            }
            fuzzCheck((try? session.start()) == [], "a second start() wrote bytes")
            expectedWrites = [Bolt8Vector.actThree]
        } else {
            session = PeerSession(
                role: .responder, localStatic: Bolt8Vector.responderStatic, localInit: ourInit,
                ephemeral: Bolt8Vector.responderEphemeral)
            expectedWrites = [Bolt8Vector.actTwo]
        }
        expectEncryptRefused(&session, .notReady("the handshake has not completed"))
        let expectedPeer = isInitiator ? Bolt8Vector.responderStatic.publicKey : Bolt8Vector.initiatorStatic.publicKey

        var establishedSeen = false
        var remoteInitSeen = false
        var writes: [[UInt8]] = []
        for piece in chunks(of: data, pattern: pattern) {
            let pendingBefore = session.handshakeBytesPending
            let events: [PeerSession.Event]
            do {
                events = try session.receive(Array(piece))
            } catch {
                _ = error.description
                fuzzCheck(!session.isEstablished || establishedSeen, "failed session reports established")
                expectFailed(&session)
                return
            }
            if !session.isEstablished, !establishedSeen {
                // Acts are 50 bytes (act one, act two) then 66 (act three) on the responder.
                fuzzCheck(
                    session.handshakeBytesPending > 0 && (piece.count >= pendingBefore || session.handshakeBytesPending == pendingBefore - piece.count),
                    "handshakeBytesPending went from \(pendingBefore) to \(session.handshakeBytesPending) after \(piece.count) bytes")
            }
            for event in events {
                switch event {
                case let .write(bytes):
                    writes.append(bytes)
                case let .established(remoteStatic):
                    fuzzCheck(!establishedSeen, "established twice")
                    fuzzCheck(remoteStatic == expectedPeer, "established with \(remoteStatic), not the vector's peer")
                    fuzzCheck(session.remoteStatic == expectedPeer, "remoteStatic property disagrees")
                    establishedSeen = true
                case let .remoteInit(message):
                    fuzzCheck(establishedSeen && !remoteInitSeen, "remoteInit out of order")
                    fuzzCheck(session.remoteInit == message, "remoteInit property disagrees")
                    remoteInitSeen = true
                case .message:
                    fuzzCheck(remoteInitSeen, "a message was delivered before the peer's init")
                }
            }
            fuzzCheck(session.isEstablished == establishedSeen, "isEstablished disagrees with the events")
            if establishedSeen { fuzzCheck(session.handshakeBytesPending == 0, "handshake bytes pending after establishment") }
        }
        // The handshake writes are the spec's acts; then our init in a BOLT frame.
        let handshakeWrites = Array(writes.prefix(expectedWrites.count))
        fuzzCheck(handshakeWrites == Array(expectedWrites.prefix(handshakeWrites.count)), "handshake wrote \(handshakeWrites.map(\.hex))")
        if establishedSeen {
            fuzzCheck(writes.count == expectedWrites.count + 1, "\(writes.count) writes after establishment")
            checkInitFrame(writes.last!, ourInit, isInitiator: isInitiator)
        }
    }

    /// Our init frame, decrypted with the vector's keys for the peer's direction.
    static func checkInitFrame(_ frame: [UInt8], _ ourInit: InitMessage, isInitiator: Bool) {
        let key = isInitiator ? Bolt8Vector.initiatorSendingKey : Bolt8Vector.initiatorReceivingKey
        var decoder = FrameDecoder(cipher: Bolt8Vector.cipher(key))
        decoder.append(frame)
        guard let plaintext = try? decoder.nextMessage(), decoder.bufferedByteCount == 0 else {
            fuzzFailure("our init frame does not decrypt with the vector's keys")
        }
        fuzzCheck((try? Message.decode(plaintext)) == .`init`(ourInit), "our init frame carries something else")
    }

    /// `encrypt` refuses (with `error`) and leaves the session as it was.
    static func expectEncryptRefused(_ session: inout PeerSession, _ expected: SessionError) {
        let wasEstablished = session.isEstablished
        do {
            _ = try session.encrypt([0x00, 0x12, 0x00, 0x00, 0x00, 0x00])
            fuzzFailure("encrypt allowed before the session was ready")
        } catch {
            fuzzCheck(error == expected, "encrypt refused with \(error), expected \(expected)")
        }
        fuzzCheck(session.isEstablished == wasEstablished, "a refused encrypt changed the session")
    }

    static func expectFailed(_ session: inout PeerSession) {
        do {
            _ = try session.receive([0])
            fuzzFailure("a failed session accepted more bytes")
        } catch {
            fuzzCheck(error == .notReady("the session has already failed"), "failed session threw \(error)")
        }
        fuzzCheck(!session.isEstablished, "a failed session reports established")
    }

    // MARK: mode 1

    struct Connected {
        var responder: PeerSession
        /// The initiator's transport: its encoder, and a decoder positioned after the
        /// responder's init frame.
        var encoder: FrameEncoder
        var decoder: FrameDecoder
    }

    /// Four prepared connections, indexed by 2 x (our init offers large frames) + (small local limit).
    nonisolated(unsafe) static let connections: [Connected] = fixture {
        [false, true].flatMap { large in
            [FrameFormat.large.maximumMessageLength, 1_000].map { limit in connect(largeFrames: large, limit: limit) }
        }
    }

    static func connect(largeFrames: Bool, limit: Int) -> Connected {
        var initiator = HandshakeInitiator(
            localStatic: Bolt8Vector.initiatorStatic, remoteStatic: Bolt8Vector.responderStatic.publicKey,
            ephemeral: Bolt8Vector.initiatorEphemeral)
        var responder = PeerSession(
            role: .responder, localStatic: Bolt8Vector.responderStatic, localInit: localInit(largeFrames: largeFrames),
            maximumMessageLength: limit, ephemeral: Bolt8Vector.responderEphemeral)
        do {
            let actOne = try initiator.makeActOne()
            let actTwoEvents = try responder.receive(actOne)
            guard case let .write(actTwo)? = actTwoEvents.first, actTwoEvents.count == 1 else { fatalError("no act two") }
            let (actThree, result) = try initiator.receiveActTwo(actTwo)
            let events = try responder.receive(actThree)
            guard events.count == 2, case .established = events[0], case let .write(initFrame) = events[1] else {
                fatalError("unexpected events \(events)")
            }
            var decoder = FrameDecoder(cipher: result.receivingCipher)
            decoder.append(initFrame)
            guard let plaintext = try decoder.nextMessage(), case .`init` = try Message.decode(plaintext) else {
                fatalError("the responder's first frame is not its init")
            }
            return Connected(responder: responder, encoder: FrameEncoder(cipher: result.sendingCipher), decoder: decoder)
        } catch {
            fatalError("in-process handshake failed: \(error)")
        }
    }

    static func established(_ input: inout FuzzInput) {
        let options = input.byte()
        let pattern = input.take(4)
        var connection = connections[Int(options & 1) * 2 + Int(options >> 1 & 1)]
        let ourInit = connection.responder.localInit
        let limit = connection.responder.maximumMessageLength
        let planned = planMessages(&input, maximumMessages: 32)
        guard !planned.isEmpty else { return }

        // The initiator frames the messages the way a correct peer would: its init first,
        // then large frames exactly when both inits offer them.
        let firstInit: InitMessage? = {
            if case let .`init`(message)? = try? Message.decode(planned[0].bytes) { return message }
            return nil
        }()
        let largeFrames = firstInit.map {
            ourInit.combinedFeatures.supports(.lnpLargeFrames) && $0.combinedFeatures.supports(.lnpLargeFrames)
        } ?? false
        var stream: [UInt8] = []
        var sent: [[UInt8]] = []
        for message in planned {
            do {
                try connection.encoder.encrypt(message.bytes, appendingTo: &stream)
            } catch {
                break  // too big for the current format: a real peer could not send it either
            }
            sent.append(message.bytes)
            if sent.count == 1, largeFrames { connection.encoder.format = .large }
        }
        guard let first = sent.first else { return }

        // What the session must make of the first message.
        var expectedError: SessionError?
        var peerInit: InitMessage?
        if first.count > limit {
            expectedError = .messageTooLarge(length: first.count, limit: limit)
        } else {
            do {
                let message = try Message.decode(first)
                if case let .`init`(decoded) = message {
                    peerInit = decoded
                } else {
                    expectedError = .firstMessageNotInit(type: message.type)
                }
            } catch {
                expectedError = .malformedInit(String(describing: error))
            }
        }
        fuzzCheck(peerInit == firstInit || expectedError != nil, "inconsistent init reading")

        var responder = connection.responder
        expectEncryptRefused(&responder, .notReady("the peer's init has not arrived yet (BOLT-1: nothing may be sent before it)"))
        var received: [[UInt8]] = []
        var initSeen = false
        var failure: SessionError?
        feed: for piece in chunks(of: stream, pattern: pattern) {
            let events: [PeerSession.Event]
            do {
                events = try responder.receive(Array(piece))
            } catch {
                failure = error
                break feed
            }
            for event in events {
                switch event {
                case let .remoteInit(message):
                    fuzzCheck(!initSeen && received.isEmpty, "a second remoteInit")
                    fuzzCheck(message == peerInit, "remoteInit differs from Message.decode's reading")
                    fuzzCheck(responder.largeFramesActive == largeFrames, "large frames active: \(responder.largeFramesActive), expected \(largeFrames)")
                    initSeen = true
                case let .message(bytes):
                    fuzzCheck(initSeen, "message before init")
                    received.append(bytes)
                    echo(bytes, &responder, &connection.decoder, largeFrames: largeFrames)
                default:
                    fuzzFailure("unexpected event \(event) after establishment")
                }
            }
        }

        // `receive` throws away the events of the call that fails (the session is over), so
        // after a failure only what earlier calls delivered can be compared.
        if let expectedError {
            fuzzCheck(failure == expectedError, "first message failed with \(String(describing: failure)), expected \(expectedError)")
            fuzzCheck(!initSeen && responder.remoteInit == nil, "init reported although the first message is not a valid init")
            expectFailed(&responder)
            return
        }
        fuzzCheck(responder.remoteInit == peerInit, "remoteInit property differs from Message.decode's reading")
        fuzzCheck(responder.largeFramesActive == largeFrames, "large frames active: \(responder.largeFramesActive), expected \(largeFrames)")
        let later = Array(sent.dropFirst())
        // Only a message over the local limit may fail, and the first such one must.
        let oversized = later.firstIndex { $0.count > limit }
        fuzzCheck(received == Array(later.prefix(received.count)), "delivered messages differ from those sent")
        if let oversized {
            fuzzCheck(received.count <= oversized, "a message over the limit was delivered")
            fuzzCheck(
                failure == .messageTooLarge(length: later[oversized].count, limit: limit),
                "message \(oversized) (\(later[oversized].count) bytes, limit \(limit)) gave \(String(describing: failure))")
            expectFailed(&responder)
        } else {
            fuzzCheck(failure == nil, "session failed with \(String(describing: failure))")
            fuzzCheck(initSeen, "the peer's init was not reported")
            fuzzCheck(received == later, "\(received.count) of \(later.count) messages delivered")
        }
    }

    /// The session's own sending path: the echo must decrypt on the initiator's side.
    static func echo(_ bytes: [UInt8], _ session: inout PeerSession, _ decoder: inout FrameDecoder, largeFrames: Bool) {
        if largeFrames, decoder.format == .bolt {
            do { try decoder.switchFormat(to: .large) } catch { fuzzFailure("initiator decoder cannot switch: \(error)") }
        }
        let frame: [UInt8]
        do {
            frame = try session.encrypt(bytes)
        } catch {
            let maximum = largeFrames ? FrameFormat.large.maximumMessageLength : FrameFormat.bolt.maximumMessageLength
            fuzzCheck(error == .messageTooLarge(length: bytes.count, limit: maximum), "echo failed with \(error)")
            return
        }
        decoder.append(frame)
        do {
            let echoed = try decoder.nextMessage()
            fuzzCheck(echoed == bytes && decoder.bufferedByteCount == 0, "echo came back changed")
        } catch {
            fuzzFailure("echo does not decrypt: \(error)")
        }
    }
}
