/// Method and event numbers of each service on the bus. Numbers at 0xFF00 and above are
/// reserved for the bus itself (readiness, liveness).

/// lnpd: the front door clients (lnp-cli) talk to.
public enum NodeMethod: UInt16, Sendable {
    case info = 1, connect, disconnect, peers, ping, send, recv, status, spoolExport, spoolImport
}

/// keyd: the only holder of the node key.
public enum KeyMethod: UInt16, Sendable {
    case nodeID = 1, ecdh, signDigest, signSchnorr
}

/// peerd: connections to other nodes.
public enum PeerMethod: UInt16, Sendable {
    case connect = 1, disconnect, peers, ping, send, listenAddresses, torStatus
}

public enum PeerEventType: UInt16, Sendable {
    case connected = 1, disconnected, messages, writable
}

/// msgd: the message layer (storage, queues, delivery, receipts).
public enum MessageMethod: UInt16, Sendable {
    case send = 1, recv, status, spoolExport, spoolImport
}

public enum MessageEventType: UInt16, Sendable {
    case received = 1, delivered
}
