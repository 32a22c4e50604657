/// One request, reply or event body on the bus: a method number and the bytes the
/// caller encoded with `WireWriter` / `TLVStream`.
public struct BusMessage: Sendable, Equatable {
    public var method: UInt16
    public var payload: [UInt8]

    public init(method: UInt16, payload: [UInt8] = []) {
        self.method = method
        self.payload = payload
    }

    /// The largest payload the bus carries (64 MiB); larger ones are refused on send
    /// and dropped on receipt.
    public static let maximumPayloadSize = 64 << 20

    /// Methods the bus itself uses; services pick theirs below `0xFF00`.
    public static let reservedMethods: ClosedRange<UInt16> = 0xFF00...0xFFFF
    /// Event every server publishes once its sockets are bound.
    public static let readyMethod: UInt16 = 0xFF00
    /// Request every server answers itself (empty reply) without calling its handler.
    public static let pingMethod: UInt16 = 0xFF01

    public var isReserved: Bool { BusMessage.reservedMethods.contains(method) }
}

/// Error codes the bus itself puts into `.remote` errors; services use codes below `0xFF00`.
public enum BusRemoteCode {
    /// The service's handler let go of the `BusResponder` without replying.
    public static let unanswered: UInt16 = 0xFF00
    /// A request named a reserved method the server does not know.
    public static let unknownBusMethod: UInt16 = 0xFF01
}
