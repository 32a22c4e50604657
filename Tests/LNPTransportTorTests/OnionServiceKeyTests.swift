#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import LNPTransportTor
import Testing

@Suite struct OnionServiceKeyTests {
    /// Recorded from tor 0.4.9: `ADD_ONION NEW:ED25519-V3 …` answered this ServiceID and key.
    static let torVectorBlob = "ED25519-V3:CBvstjdOhbpG6hD4QuaF/3dcMTWpe5XeH7VAzymlRnMUFII2UU+VGqslPnG9lTUNUob4psUDjNBdD3zEa76LAg=="
    static let torVectorServiceID = "thcstpza3exloc5t7lqkei4zd6cgbk6zfioai7cvyg34kyhokk6ufhad"

    @Test func derivesTheServiceIDTorAnnounced() throws {
        let key = try OnionServiceKey(torKeyBlob: Self.torVectorBlob)
        #expect(key.serviceID == Self.torVectorServiceID)
        #expect(key.torKeyBlob == Self.torVectorBlob)
        // Without the type prefix and without padding, too.
        let bare = String(Self.torVectorBlob.dropFirst(11).dropLast(2))
        #expect(try OnionServiceKey(torKeyBlob: bare).serviceID == Self.torVectorServiceID)
        // Printing a key never prints the secret.
        #expect(!"\(key)".contains("CBvstj"))
        #expect("\(key)".contains(Self.torVectorServiceID))
    }

    @Test func malformedKeysAreTypedErrors() {
        let cases: [(String, String)] = [
            ("RSA1024:AAAA", "key type 'RSA1024' is not ED25519-V3"),
            ("ED25519-V3:!!!!", "not base64"),
            ("ED25519-V3:" + Data(repeating: 0x40, count: 32).base64EncodedString(), "64 bytes, got 32"),
            // Scalar with its low bits set: not clamped, so not a key tor made.
            ("ED25519-V3:" + Data([0x07] + [UInt8](repeating: 0x40, count: 63)).base64EncodedString(), "not clamped"),
            ("ED25519-V3:" + String(repeating: "A", count: 500), "too long"),
        ]
        for (blob, reason) in cases {
            do {
                _ = try OnionServiceKey(torKeyBlob: blob)
                Issue.record("\(blob.prefix(30)) must not parse")
            } catch {
                #expect(error.description.contains(reason), "\(error)")
            }
        }
    }

    @Test func savedOnceLoadedOnEveryStart() throws {
        let directory = makeTorControlTestDirectory("key")
        defer { removeTorControlTestDirectory(directory) }
        #expect(try OnionServiceKey.load(fromDirectory: directory) == nil, "no key before the first start")
        let key = try OnionServiceKey(torKeyBlob: Self.torVectorBlob)
        try key.save(toDirectory: directory)
        let path = directory + "/onion_v3.key"
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
        #expect(access(path + ".tmp", F_OK) != 0, "the temporary file is renamed away")
        #expect(try OnionServiceKey.load(fromDirectory: directory)?.serviceID == Self.torVectorServiceID)
        // Saving again replaces the file whole.
        try key.save(toDirectory: directory)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == Self.torVectorBlob + "\n")
    }

    @Test func refusesAWidelyReadableOrDamagedFile() throws {
        let directory = makeTorControlTestDirectory("key")
        defer { removeTorControlTestDirectory(directory) }
        let path = directory + "/onion_v3.key"
        try OnionServiceKey(torKeyBlob: Self.torVectorBlob).save(toDirectory: directory)
        chmod(path, 0o644)
        #expect(throws: OnionServiceKeyError.tooOpen(path: path, mode: UInt32(S_IFREG) | 0o644)) {
            try OnionServiceKey.load(fromDirectory: directory)
        }
        chmod(path, 0o600)
        try Data("ED25519-V3:@@@@\n".utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        #expect(throws: OnionServiceKeyError.damaged(path: path, reason: "the onion service key is malformed: not base64")) {
            try OnionServiceKey.load(fromDirectory: directory)
        }
        try Data(repeating: 0x41, count: 5000).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        #expect(throws: OnionServiceKeyError.damaged(path: path, reason: "larger than 1024 bytes")) {
            try OnionServiceKey.load(fromDirectory: directory)
        }
    }
}
