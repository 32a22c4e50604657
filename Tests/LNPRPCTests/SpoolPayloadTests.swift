import LNPCrypto
import LNPRPC
import LNPWire
import Testing

/// The bus payloads of `spoolExport` and `spoolImport`.
@Suite struct SpoolPayloadTests {
    let key = PrivateKey.generate().publicKey

    @Test func spoolPayloadsRoundTrip() throws {
        for peer in [key, nil] {
            let request = SpoolExportRequest(directory: "/media/stick/lnp", peer: peer)
            #expect(try SpoolExportRequest.decode(request.encoded()) == request)
        }
        let exported = SpoolExportReply(files: ["lnp-001-0000-ab.lnpspool", "lnp-002-0000-cd.lnpspool"], messages: 10_000, receipts: 1, peers: 1)
        #expect(try SpoolExportReply.decode(exported.encoded()) == exported)
        #expect(try SpoolImportRequest.decode(SpoolImportRequest(directory: "/tmp/x").encoded()) == SpoolImportRequest(directory: "/tmp/x"))
        let imported = SpoolImportReply(bundlesImported: 2, bundlesAlreadyImported: 3, bundlesForAnotherNode: 1, filesRejected: 4,
                                        messagesStored: 10_000, duplicates: 6, receipts: 1, envelopesRejected: 7, moreWaiting: true,
                                        problems: ["bundle x was rejected: the bundle is cut short"])
        #expect(try SpoolImportReply.decode(imported.encoded()) == imported)
    }

    @Test func spoolPayloadsAreBounded() throws {
        // At most `maximumProblems` sentences go out, and no more are accepted.
        let many = SpoolImportReply(problems: Array(repeating: "p", count: SpoolImportReply.maximumProblems + 10))
        #expect(try SpoolImportReply.decode(many.encoded()).problems.count == SpoolImportReply.maximumProblems)
        var lying = WireWriter()
        for _ in 0..<8 { lying.writeU32(0) }
        lying.writeBool(false)
        StringList(Array(repeating: "p", count: SpoolImportReply.maximumProblems + 1)).encode(into: &lying)
        #expect(throws: WireError.self) { try SpoolImportReply.decode(lying.bytes) }
        // A directory longer than a bus string and trailing bytes are refused.
        var long = WireWriter()
        long.writeU16(UInt16(RPCLimits.maximumStringLength + 1))
        long.writeBytes([UInt8](repeating: 0x41, count: RPCLimits.maximumStringLength + 1))
        #expect(throws: WireError.self) { try SpoolImportRequest.decode(long.bytes) }
        #expect(throws: WireError.self) { try SpoolImportRequest.decode(SpoolImportRequest(directory: "/x").encoded() + [0]) }
        #expect(throws: WireError.self) { try SpoolExportRequest.decode([0, 1, 0x2f]) }
    }
}
