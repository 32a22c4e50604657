import LNPCrypto
import LNPSession

/// Cipher states keyed like the BOLT-8 message test (`sk`, `ck`), advanced by a number of
/// messages so that short inputs also cross a key rotation (every 500 messages). Built once.
enum AdvancedCiphers {
    /// Messages already sent: 0, 499 (the next message is the last with the first key),
    /// 500 (the spec's outputs[500] is next) and 1000 (outputs[1000] is next).
    static let advances = [0, 499, 500, 1000]

    /// (encoder cipher, decoder cipher) pairs in step, one per entry of `advances`.
    static let states: [(encoder: CipherState, decoder: CipherState)] = fixture { advances.map { count in
        var encoder = FrameEncoder(cipher: Bolt8Vector.cipher(Bolt8Vector.initiatorSendingKey))
        var decoder = FrameDecoder(cipher: Bolt8Vector.cipher(Bolt8Vector.initiatorSendingKey))
        var frames: [UInt8] = []
        for _ in 0..<count { try? encoder.encrypt([], appendingTo: &frames) }
        decoder.append(frames)
        for _ in 0..<count {
            guard (try? decoder.nextMessage()) == [] else { fatalError("cannot advance the decoder") }
        }
        return (encoder.cipher, decoder.cipher)
    } }
}

/// `frames`: the BOLT-8 frame codec (`FrameDecoder`, `FrameEncoder`) in BOLT and large
/// format. Input layout: a mode byte, a byte for the decoder's size limit, four bytes of
/// chunk pattern (see `chunks(of:pattern:)`), then the mode's data. Mode byte bits:
/// - bit 0: 0 = the data is ciphertext fed to a decoder; 1 = the data is a list of
///   plaintext messages (`planMessages`) that an encoder encrypts and a decoder must give back;
/// - bit 1: initial format (0 = BOLT, 1 = large);
/// - bits 2-3: which `AdvancedCiphers` state both sides start from;
/// - bit 4: use the zero-copy `withNextMessage` instead of `nextMessage`.
/// Pieces go through `append`'s three paths in turn; a message's control byte bits 3-4
/// pick the encoder's `encrypt` variant.
/// Limit byte: 0 = no local limit beyond the format's; otherwise `n * 257` bytes.
///
/// Properties checked:
/// - ciphertext mode: feeding the data in chunks gives exactly the messages and the final
///   error that feeding it at once gives, and `bufferedByteCount` / `isAtFrameBoundary`
///   always account for every byte fed;
/// - round trip: the decoder returns every message the encoder framed, in order and
///   intact, through format switches at frame boundaries; a message over the decoder's
///   limit fails with exactly `.messageTooLarge(length, limit)`; the encoder rejects
///   messages its format cannot carry without using a nonce; switching format mid-frame
///   is refused; both ciphers stay in step (same nonce after every message).
public enum FramesTarget {
    struct Outcome: Equatable {
        var messages: [[UInt8]] = []
        var error: SessionError?
    }

    public static func prepare() {
        _ = AdvancedCiphers.states
    }

    public static func run(_ buffer: UnsafeRawBufferPointer) {
        var input = FuzzInput(buffer)
        let mode = input.byte()
        let limitByte = input.byte()
        let pattern = input.take(4)
        let format: FrameFormat = mode & 2 == 0 ? .bolt : .large
        let state = AdvancedCiphers.states[Int(mode >> 2) & 3]
        let zeroCopy = mode & 0x10 != 0
        let limit = limitByte == 0 ? FrameFormat.large.maximumMessageLength : Int(limitByte) * 257
        if mode & 1 == 0 {
            decodeCiphertext(input.rest(), state.decoder, format, limit, pattern, zeroCopy)
        } else {
            roundTrip(&input, state, format, limit, pattern, zeroCopy)
        }
    }

    /// Feeds one piece through each of `append`'s paths in turn: a contiguous collection,
    /// a raw buffer, and (for small pieces: it is copied byte by byte) a collection without
    /// contiguous storage.
    static func feed(_ decoder: inout FrameDecoder, _ piece: ArraySlice<UInt8>, variant: Int) {
        switch variant % 3 {
        case 1: piece.withUnsafeBytes { decoder.append($0) }
        case 2 where piece.count <= 32: decoder.append(piece.lazy.map { $0 })
        default: decoder.append(piece)
        }
    }

    static func next(_ decoder: inout FrameDecoder, zeroCopy: Bool) throws(SessionError) -> [UInt8]? {
        if zeroCopy {
            return try decoder.withNextMessage { Array($0) }
        }
        return try decoder.nextMessage()
    }

    // MARK: ciphertext

    static func decodeCiphertext(
        _ data: [UInt8], _ cipher: CipherState, _ format: FrameFormat, _ limit: Int, _ pattern: [UInt8], _ zeroCopy: Bool
    ) {
        let whole = decode(data, pieces: [data[...]], cipher, format, limit, zeroCopy)
        let chunked = decode(data, pieces: chunks(of: data, pattern: pattern), cipher, format, limit, zeroCopy)
        fuzzCheck(whole == chunked, "chunking changes the outcome: \(whole) vs \(chunked)")
    }

    static func decode(
        _ data: [UInt8], pieces: [ArraySlice<UInt8>], _ cipher: CipherState, _ format: FrameFormat, _ limit: Int, _ zeroCopy: Bool
    ) -> Outcome {
        var decoder = FrameDecoder(cipher: cipher, format: format, maximumMessageLength: limit)
        var outcome = Outcome()
        var fed = 0
        var consumed = 0
        var pendingHeader = false
        for (index, piece) in pieces.enumerated() {
            feed(&decoder, piece, variant: index)
            fed += piece.count
            do {
                while let message = try next(&decoder, zeroCopy: zeroCopy) {
                    fuzzCheck(message.count <= limit && message.count <= format.maximumMessageLength, "message over the limit returned")
                    outcome.messages.append(message)
                    consumed += format.frameSize(forMessageLength: message.count) - (pendingHeader ? format.headerSize : 0)
                    pendingHeader = false
                }
            } catch {
                outcome.error = error
                return outcome
            }
            if !decoder.isAtFrameBoundary, !pendingHeader {
                consumed += format.headerSize
                pendingHeader = true
            }
            fuzzCheck(
                decoder.bufferedByteCount == fed - consumed,
                "bufferedByteCount \(decoder.bufferedByteCount), but \(fed) fed and \(consumed) consumed")
            fuzzCheck(decoder.messagesDecoded == UInt64(outcome.messages.count), "messagesDecoded is off")
        }
        return outcome
    }

    // MARK: round trip

    static func roundTrip(
        _ input: inout FuzzInput, _ state: (encoder: CipherState, decoder: CipherState), _ initialFormat: FrameFormat,
        _ limit: Int, _ pattern: [UInt8], _ zeroCopy: Bool
    ) {
        let planned = planMessages(&input)
        var encoder = FrameEncoder(cipher: state.encoder, format: initialFormat)
        // Frame everything first, recording the format each frame was written in.
        var stream: [UInt8] = []
        var sent: [(bytes: [UInt8], format: FrameFormat, switchAfter: Bool)] = []
        for message in planned {
            let nonceBefore = encoder.cipher.nonce
            do {
                // The three encrypt entry points, chosen by the message's control byte.
                switch message.control & 0x18 {
                case 0x08: stream += try encoder.encrypt(message.bytes)
                case 0x10:
                    try message.bytes.withUnsafeBytes { raw in
                        Result { () throws(SessionError) in try encoder.encrypt(raw, appendingTo: &stream) }
                    }.get()
                default: try encoder.encrypt(message.bytes, appendingTo: &stream)
                }
                fuzzCheck(message.bytes.count <= encoder.format.maximumMessageLength, "encoder framed an oversized message")
            } catch {
                fuzzCheck(
                    error == .messageTooLarge(length: message.bytes.count, limit: encoder.format.maximumMessageLength),
                    "encoder failed with \(error) for a \(message.bytes.count)-byte message")
                fuzzCheck(encoder.cipher.nonce == nonceBefore, "a rejected message used a nonce")
                continue
            }
            sent.append((message.bytes, encoder.format, message.switchFormatAfter))
            if message.switchFormatAfter {
                encoder.format = encoder.format == .bolt ? .large : .bolt
            }
        }

        var decoder = FrameDecoder(cipher: state.decoder, format: initialFormat, maximumMessageLength: limit)
        var received = 0
        for (index, piece) in chunks(of: stream, pattern: pattern).enumerated() {
            feed(&decoder, piece, variant: index)
            while true {
                let message: [UInt8]?
                do {
                    message = try next(&decoder, zeroCopy: zeroCopy)
                } catch {
                    fuzzCheck(received < sent.count, "error \(error) after every message was received")
                    let length = sent[received].bytes.count
                    fuzzCheck(
                        error == .messageTooLarge(length: length, limit: limit),
                        "message \(received) (\(length) bytes, limit \(limit)) failed with \(error)")
                    return
                }
                guard let message else { break }
                fuzzCheck(received < sent.count, "decoder returned more messages than were sent")
                fuzzCheck(decoder.format == sent[received].format, "decoder and encoder formats differ")
                fuzzCheck(message == sent[received].bytes, "message \(received) came back changed")
                if sent[received].switchAfter {
                    do {
                        try decoder.switchFormat(to: decoder.format == .bolt ? .large : .bolt)
                    } catch {
                        fuzzFailure("switchFormat refused at a frame boundary: \(error)")
                    }
                }
                received += 1
            }
            if !decoder.isAtFrameBoundary {
                let format = decoder.format
                do {
                    try decoder.switchFormat(to: format == .bolt ? .large : .bolt)
                    fuzzFailure("switchFormat allowed in the middle of a frame")
                } catch {
                    fuzzCheck(decoder.format == format, "a refused switch changed the format")
                }
            }
        }
        fuzzCheck(received == sent.count, "only \(received) of \(sent.count) messages came back")
        fuzzCheck(decoder.bufferedByteCount == 0 && decoder.isAtFrameBoundary, "bytes left over after the last frame")
        fuzzCheck(decoder.cipher.nonce == encoder.cipher.nonce, "encoder and decoder nonces differ")
        fuzzCheck(decoder.cipher.hasSameKey(as: encoder.cipher), "encoder and decoder keys differ")
    }
}
