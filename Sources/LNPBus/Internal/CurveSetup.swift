import CZeroMQ

/// CURVE options for bus sockets on the tcp transport.
enum CurveSetup {
    /// A bus server socket: CURVE server with the node's secret key, clients checked by
    /// the context's ZAP handler under `domain`.
    static func configureServer(_ socket: ZSocket, keys: CurveKeys, domain: String) throws(BusError) {
        guard let secret = keys.serverSecretKey else {
            throw BusError(.insecureEndpoint("a bus server on tcp needs the node's CURVE server secret key (CurveKeys(server:))"))
        }
        try socket.set(ZMQ_CURVE_SERVER, 1)
        try secret.withUnsafeBytes { (bytes) throws(BusError) in
            try socket.set(ZMQ_CURVE_SECRETKEY, bytes: bytes)
        }
        try socket.set(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8))
    }

    /// A bus client socket: pins the server's public key and authenticates with the
    /// process's client key pair.
    static func configureClient(_ socket: ZSocket, keys: CurveKeys) throws(BusError) {
        try socket.set(ZMQ_CURVE_SERVERKEY, bytes: keys.serverPublicKey)
        try socket.set(ZMQ_CURVE_PUBLICKEY, bytes: keys.client.publicKey)
        try keys.client.secretKey.withUnsafeBytes { (bytes) throws(BusError) in
            try socket.set(ZMQ_CURVE_SECRETKEY, bytes: bytes)
        }
    }
}
