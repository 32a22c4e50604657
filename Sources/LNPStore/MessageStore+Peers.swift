import Foundation
import GRDB
import LNPCrypto

extension MessageStore {
    /// Records a peer, or updates it. `address`, when given, is added to its addresses
    /// (kept as given; LNPTransport parses them). `persistent` only ever turns the flag
    /// on: a peer we once connected to stays persistent until `removePeer`, whatever later
    /// inbound connections report. `connectedAt`, when given, becomes its last connection
    /// time.
    public func upsertPeer(
        _ nodeID: PublicKey, address: String?, persistent: Bool, connectedAt: Date? = nil
    ) throws(StoreError) {
        if let address {
            guard !address.isEmpty, address.utf8.count <= Self.maxAddressLength,
                  !address.utf8.contains(0)
            else { throw .invalidAddress(address) }
        }
        try writing { db in
            let node = try node(db, nodeID, create: true)!
            let upsert = try RawStatement(db, """
                INSERT INTO peer (node, persistent, last_connected_at) VALUES (?, ?, ?)
                ON CONFLICT (node) DO UPDATE SET
                    persistent = persistent OR excluded.persistent,
                    last_connected_at = coalesce(excluded.last_connected_at, last_connected_at)
                """)
            upsert.bind(1, node.ref)
            upsert.bind(2, persistent ? 1 : 0)
            upsert.bind(3, connectedAt.map(Millis.from))
            try upsert.run()
            if let address {
                let insert = try RawStatement(db, """
                    INSERT INTO peer_address (node, address) VALUES (?, ?) ON CONFLICT DO NOTHING
                    """)
                insert.bind(1, node.ref)
                insert.bind(2, address)
                try insert.run()
            }
        }
    }

    /// Forgets a peer and its addresses (`disconnect`). Messages to it stay queued.
    public func removePeer(_ nodeID: PublicKey) throws(StoreError) {
        try writing { db in
            guard let node = try node(db, nodeID, create: false) else { return }
            for sql in ["DELETE FROM peer_address WHERE node = ?", "DELETE FROM peer WHERE node = ?"] {
                let delete = try RawStatement(db, sql)
                delete.bind(1, node.ref)
                try delete.run()
            }
        }
    }

    /// Every recorded peer, in the order first recorded.
    public func peers() throws(StoreError) -> [StoredPeer] {
        try reading { db in try peers(db, only: nil) }
    }

    public func peer(_ nodeID: PublicKey) throws(StoreError) -> StoredPeer? {
        try reading { db in
            guard let node = try node(db, nodeID, create: false) else { return nil }
            return try peers(db, only: node.ref).first
        }
    }

    private func peers(_ db: Database, only ref: Int64?) throws -> [StoredPeer] {
        let filter = ref == nil ? "" : "WHERE node = ?1"
        let addresses = try RawStatement(db, "SELECT node, address FROM peer_address \(filter) ORDER BY node, rowid")
        if let ref { addresses.bind(1, ref) }
        var byNode: [Int64: [String]] = [:]
        while try addresses.step() {
            byNode[addresses.int64(0), default: []].append(addresses.text(1) ?? "")
        }
        addresses.reset()
        let select = try RawStatement(db, "SELECT node, persistent, last_connected_at FROM peer \(filter) ORDER BY node")
        if let ref { select.bind(1, ref) }
        defer { select.reset() }
        var peers: [StoredPeer] = []
        while try select.step() {
            let ref = select.int64(0)
            peers.append(StoredPeer(
                nodeID: try key(db, ref: ref), addresses: byNode[ref] ?? [],
                persistent: select.int64(1) != 0, lastConnectedAt: select.optionalInt64(2).map(Millis.date)))
        }
        return peers
    }
}
