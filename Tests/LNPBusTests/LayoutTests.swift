import LNPBus
import Testing

@Suite("Names and endpoints")
struct LayoutTests {
    @Test("service names are short lowercase identifiers")
    func serviceNames() {
        #expect(ServiceName(rawValue: "keyd") == .keyd)
        #expect(ServiceName(rawValue: "my-service_2") != nil)
        #expect(ServiceName(rawValue: "") == nil)
        #expect(ServiceName(rawValue: "Keyd") == nil)
        #expect(ServiceName(rawValue: "../etc") == nil)
        #expect(ServiceName(rawValue: "9lives") == nil)
        #expect(ServiceName(rawValue: String(repeating: "a", count: 33)) == nil)
    }

    @Test("every transport names its endpoints in one place")
    func endpoints() throws {
        let inproc = BusLayout(transport: .inproc(namespace: "node-1"))
        #expect(inproc.rpcEndpoint(for: .peerd) == "inproc://lnp-bus/node-1/peerd/rpc")
        #expect(inproc.eventEndpoint(for: .peerd) == "inproc://lnp-bus/node-1/peerd/events")

        let ipc = BusLayout(transport: .ipc(directory: "/var/lib/lnp/"))
        #expect(ipc.rpcEndpoint(for: .msgd) == "ipc:///var/lib/lnp/bus-msgd.rpc")
        #expect(ipc.eventEndpoint(for: .msgd) == "ipc:///var/lib/lnp/bus-msgd.events")

        let keys = try CurveKeyPair.generate()
        let tcp = BusLayout(transport: .tcp(host: "10.0.0.2", basePort: 9000, curve: CurveKeys(server: keys)),
                                hosts: [.keyd: "::1"])
        #expect(tcp.rpcEndpoint(for: .lnpd) == "tcp://10.0.0.2:9000")
        #expect(tcp.eventEndpoint(for: .lnpd) == "tcp://10.0.0.2:9001")
        #expect(tcp.rpcEndpoint(for: .keyd) == "tcp://[::1]:9002")
        #expect(tcp.eventEndpoint(for: .peerd) == "tcp://10.0.0.2:9005")
        #expect(tcp.rpcEndpoint(for: ServiceName(rawValue: "extra")!) == "tcp://10.0.0.2:0")
        let context = try BusContext(logger: .discard)
        defer { context.close() }
        #expect(throws: BusError.self) { _ = try BusClient(context: context, layout: tcp, service: ServiceName(rawValue: "extra")!) }
    }

    @Test("unusable layouts are refused when built")
    func invalidLayouts() throws {
        #expect(throws: BusError.self) { try BusLayout(transport: .inproc(namespace: "")).validate() }
        #expect(throws: BusError.self) { try BusLayout(transport: .inproc(namespace: "a/b")).validate() }
        #expect(throws: BusError.self) { try BusLayout(transport: .ipc(directory: "relative/dir")).validate() }
        #expect(throws: BusError.self) {
            try BusLayout(transport: .ipc(directory: "/" + String(repeating: "d", count: 100))).validate()
        }
        let keys = try CurveKeyPair.generate()
        #expect(throws: BusError.self) {
            try BusLayout(transport: .tcp(host: "127.0.0.1", basePort: 65_530, curve: CurveKeys(server: keys))).validate()
        }
        #expect(throws: BusError.self) {
            try BusLayout(transport: .tcp(host: "127.0.0.1", basePort: 9000,
                                          curve: CurveKeys(serverPublicKey: [1, 2, 3], client: keys))).validate()
        }
        #expect(throws: BusError.self) { try BusLayout(transport: .inproc(namespace: "x"), services: [.keyd, .keyd]).validate() }
    }

    @Test("errors read as sentences")
    func errorDescriptions() {
        #expect(BusError(.timeout(.keyd, method: 3, after: .milliseconds(250))).description == "keyd did not answer method 3 within 250.0 ms")
        #expect(BusError(.timeout(.keyd, method: BusMessage.pingMethod, after: .seconds(2))).description == "keyd did not answer ping within 2.0 s")
        #expect(BusError(.serviceUnavailable(.peerd)).description.contains("peerd is not reachable"))
    }
}
