import LNPCrypto
import LNPWire

/// A whole BOLT-8 connection as a sans-IO state machine: the handshake, the mandatory
/// `init` exchange, and the encrypted message stream, including the switch to large
/// frames. An IO adapter feeds it the bytes it reads and writes the bytes it is given;
/// nothing here touches a socket, a clock or a thread.
///
/// The session sends our `init` itself, as the first message on both sides (BOLT-1), so it
/// knows which frame format each direction uses:
/// - each side sends its `init` in BOLT frames;
/// - BOLT-1 forbids sending anything else before the peer's `init` arrives, so once both
///   `init`s advertise `option_lnp_large_frames`, every later frame in both directions is
///   large. Each direction switches right after its own `init` frame.
public struct PeerSession: Sendable {
    public enum Role: Sendable {
        case initiator(remoteStatic: PublicKey)
        case responder
    }

    public enum Event: Equatable {
        /// Bytes to write to the link, in order.
        case write([UInt8])
        /// The handshake is done; the peer's node key is proven.
        case established(remoteStatic: PublicKey)
        /// The peer's `init`; application messages may be sent from now on.
        case remoteInit(InitMessage)
        /// An application message (u16 type + payload), still undecoded.
        case message([UInt8])
    }

    private enum State {
        case initiatorIdle(HandshakeInitiator)
        case initiatorAwaitingActTwo(HandshakeInitiator)
        case responderAwaitingActOne(HandshakeResponder)
        case responderAwaitingActThree(HandshakeResponder)
        case established(encoder: FrameEncoder, decoder: FrameDecoder)
        case failed
    }

    public let role: Role
    public let localInit: InitMessage
    public let maximumMessageLength: Int
    private var state: State
    private var handshakeBuffer: [UInt8] = []
    public private(set) var remoteStatic: PublicKey?
    public private(set) var remoteInit: InitMessage?
    public private(set) var largeFramesActive = false

    /// - Parameters:
    ///   - localInit: the `init` this side sends; its features decide whether we offer large frames.
    ///   - maximumMessageLength: the largest message accepted from the peer (bounds memory).
    public init(role: Role, localStatic: any StaticKeyAgreement, localInit: InitMessage,
                maximumMessageLength: Int = FrameFormat.large.maximumMessageLength,
                ephemeral: PrivateKey? = nil) {
        self.role = role
        self.localInit = localInit
        self.maximumMessageLength = min(maximumMessageLength, FrameFormat.large.maximumMessageLength)
        switch role {
        case let .initiator(remoteStatic):
            self.remoteStatic = remoteStatic
            state = .initiatorIdle(HandshakeInitiator(localStatic: localStatic, remoteStatic: remoteStatic, ephemeral: ephemeral))
        case .responder:
            state = .responderAwaitingActOne(HandshakeResponder(localStatic: localStatic, ephemeral: ephemeral))
        }
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// How many more bytes the handshake needs before it can make progress; 0 once
    /// established. An adapter uses it to bound reads and time the handshake out.
    public var handshakeBytesPending: Int {
        switch state {
        case .initiatorAwaitingActTwo: ActSize.two - handshakeBuffer.count
        case .responderAwaitingActOne: ActSize.one - handshakeBuffer.count
        case .responderAwaitingActThree: ActSize.three - handshakeBuffer.count
        default: 0
        }
    }

    /// The initiator's act one; the responder has nothing to send first.
    public mutating func start() throws(SessionError) -> [UInt8] {
        guard case var .initiatorIdle(initiator) = state else { return [] }
        do {
            let act = try initiator.makeActOne()
            state = .initiatorAwaitingActTwo(initiator)
            return act
        } catch {
            state = .failed
            throw .handshake(error)
        }
    }

    /// Feeds bytes read from the link. Any thrown error ends the session: the caller
    /// closes the link.
    public mutating func receive(_ bytes: [UInt8]) throws(SessionError) -> [Event] {
        var events: [Event] = []
        do {
            try receive(bytes, into: &events)
        } catch {
            state = .failed
            throw error
        }
        return events
    }

    private mutating func receive(_ bytes: [UInt8], into events: inout [Event]) throws(SessionError) {
        var input = bytes[...]
        while true {
            switch state {
            case var .initiatorAwaitingActTwo(initiator):
                guard let act = takeAct(ActSize.two, from: &input) else { return }
                let outcome: (actThree: [UInt8], result: HandshakeResult)
                do { outcome = try initiator.receiveActTwo(act) } catch { throw .handshake(error) }
                events.append(.write(outcome.actThree))
                establish(outcome.result, events: &events)
            case var .responderAwaitingActOne(responder):
                guard let act = takeAct(ActSize.one, from: &input) else { return }
                do { events.append(.write(try responder.receiveActOne(act))) } catch { throw .handshake(error) }
                state = .responderAwaitingActThree(responder)
            case var .responderAwaitingActThree(responder):
                guard let act = takeAct(ActSize.three, from: &input) else { return }
                let result: HandshakeResult
                do { result = try responder.receiveActThree(act) } catch { throw .handshake(error) }
                establish(result, events: &events)
            case .established(let encoder, var decoder):
                // Release the state's copy so the decoder's buffer is not copied on write.
                state = .failed
                decoder.append(input)
                input = []
                var currentEncoder = encoder
                try drain(&decoder, encoder: &currentEncoder, events: &events)
                state = .established(encoder: currentEncoder, decoder: decoder)
                return
            case .initiatorIdle:
                throw .notReady("the initiator must call start() before receiving")
            case .failed:
                throw .notReady("the session has already failed")
            }
        }
    }

    private mutating func drain(_ decoder: inout FrameDecoder, encoder: inout FrameEncoder, events: inout [Event]) throws(SessionError) {
        while let message = try decoder.nextMessage() {
            guard remoteInit == nil else {
                events.append(.message(message))
                continue
            }
            let decoded: InitMessage
            do {
                guard case let .`init`(initMessage) = try Message.decode(message) else {
                    throw SessionError.firstMessageNotInit(type: message.count >= 2 ? UInt16(message[0]) << 8 | UInt16(message[1]) : nil)
                }
                decoded = initMessage
            } catch let error as SessionError {
                throw error
            } catch {
                throw .malformedInit(String(describing: error))
            }
            remoteInit = decoded
            if localInit.combinedFeatures.supports(.lnpLargeFrames), decoded.combinedFeatures.supports(.lnpLargeFrames) {
                try decoder.switchFormat(to: .large)
                encoder.format = .large
                largeFramesActive = true
            }
            events.append(.remoteInit(decoded))
        }
    }

    private mutating func takeAct(_ size: Int, from input: inout ArraySlice<UInt8>) -> [UInt8]? {
        let needed = size - handshakeBuffer.count
        let taken = input.prefix(needed)
        handshakeBuffer += taken
        input = input.dropFirst(taken.count)
        guard handshakeBuffer.count == size else { return nil }
        defer { handshakeBuffer = [] }
        return handshakeBuffer
    }

    private mutating func establish(_ result: HandshakeResult, events: inout [Event]) {
        remoteStatic = result.remoteStatic
        var encoder = FrameEncoder(cipher: result.sendingCipher, format: .bolt)
        let decoder = FrameDecoder(cipher: result.receivingCipher, format: .bolt, maximumMessageLength: maximumMessageLength)
        events.append(.established(remoteStatic: result.remoteStatic))
        // Our init is always the first message, in BOLT framing. Cannot exceed the limit:
        // an init that large is a programming error, and encrypt would report it.
        var initFrame = [UInt8]()
        try? encoder.encrypt(Message.`init`(localInit).encode(), appendingTo: &initFrame)
        events.append(.write(initFrame))
        state = .established(encoder: encoder, decoder: decoder)
    }

    /// Encrypts one application message into a frame ready to write.
    public mutating func encrypt(_ message: [UInt8]) throws(SessionError) -> [UInt8] {
        var output = [UInt8]()
        try encrypt(message, appendingTo: &output)
        return output
    }

    /// Appends the frame for `message` to `output`, so a caller can batch many frames into one write.
    public mutating func encrypt(_ message: [UInt8], appendingTo output: inout [UInt8]) throws(SessionError) {
        guard case .established(var encoder, let decoder) = state else {
            throw .notReady("the handshake has not completed")
        }
        guard remoteInit != nil else {
            throw .notReady("the peer's init has not arrived yet (BOLT-1: nothing may be sent before it)")
        }
        state = .failed
        defer { state = .established(encoder: encoder, decoder: decoder) }
        try encoder.encrypt(message, appendingTo: &output)
    }
}
