import Foundation
import LNPCrypto
import Testing
@testable import LNPStore

@Suite struct PeerTests {
    @Test func upsertAccumulatesAddressesAndPersistenceIsSticky() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey(), bob = newKey()
        let tcp = "\(alice.hex)@203.0.113.5:9735"
        let udp = "udp://\(alice.hex)@203.0.113.5:9735"
        try store.upsertPeer(alice, address: tcp, persistent: true)
        try store.upsertPeer(alice, address: udp, persistent: false)
        try store.upsertPeer(alice, address: tcp, persistent: false)
        try store.upsertPeer(bob, address: nil, persistent: false)
        let t1 = Date(timeIntervalSince1970: 1_760_000_000)
        try store.upsertPeer(bob, address: nil, persistent: false, connectedAt: t1)
        try store.upsertPeer(bob, address: nil, persistent: false)

        #expect(try store.peers() == [
            StoredPeer(nodeID: alice, addresses: [tcp, udp], persistent: true, lastConnectedAt: nil),
            StoredPeer(nodeID: bob, addresses: [], persistent: false, lastConnectedAt: t1),
        ])
        try store.upsertPeer(bob, address: nil, persistent: true)
        #expect(try store.peer(bob)?.persistent == true)
        #expect(try store.peer(newKey()) == nil)
    }

    @Test func removeForgetsThePeerButNotItsMessages() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey(), bob = newKey()
        try store.upsertPeer(alice, address: "\(alice.hex)@127.0.0.1:1", persistent: true)
        try store.upsertPeer(bob, address: "\(bob.hex)@127.0.0.1:2", persistent: true)
        _ = try store.enqueue(to: alice, messages: payloads(2))
        try store.removePeer(alice)
        try store.removePeer(newKey())
        #expect(try store.peers().map(\.nodeID) == [bob])
        #expect(try store.undelivered(to: alice, afterSeq: 0, limit: 10).count == 2)
        // Coming back starts afresh: not persistent, no old addresses.
        try store.upsertPeer(alice, address: nil, persistent: false)
        #expect(try store.peer(alice) == StoredPeer(nodeID: alice, addresses: [], persistent: false, lastConnectedAt: nil))
    }

    @Test func addressesAreBounded() throws {
        let store = try MessageStore.inMemory()
        let alice = newKey()
        #expect(throws: StoreError.invalidAddress("")) { try store.upsertPeer(alice, address: "", persistent: true) }
        let long = String(repeating: "a", count: MessageStore.maxAddressLength + 1)
        #expect(throws: StoreError.invalidAddress(long)) { try store.upsertPeer(alice, address: long, persistent: true) }
        #expect(try store.peers().isEmpty)
    }
}
