/// How the services of one node reach each other.
public enum BusTransport: Sendable {
    /// Threads of one process. `namespace` keeps two nodes in one process apart.
    case inproc(namespace: String)
    /// One process per service on one host: socket files (mode 0600) in `directory`,
    /// normally the node's data directory.
    case ipc(directory: String)
    /// Across hosts. Service `i` of the layout listens on `basePort + 2i` (requests)
    /// and `basePort + 2i + 1` (events). Refused without CURVE keys.
    case tcp(host: String, basePort: UInt16, curve: CurveKeys?)
}

/// The one place that decides endpoint names.
public struct BusLayout: Sendable {
    public let transport: BusTransport
    /// The services of the node, in the order that assigns tcp ports.
    public let services: [ServiceName]
    /// tcp only: services that live on another host than `transport`'s.
    public let hosts: [ServiceName: String]

    /// Unix socket paths are limited to 107 bytes.
    static let maximumSocketPathLength = 107

    /// Takes the layout as given; `validate()` checks it, and every server, client and
    /// subscriber refuses a layout that fails the check (tcp without CURVE keys among others).
    public init(
        transport: BusTransport,
        services: [ServiceName] = ServiceName.standard,
        hosts: [ServiceName: String] = [:]
    ) {
        self.transport = transport
        self.services = services
        self.hosts = hosts
    }

    /// Throws `.insecureEndpoint` for tcp without (complete) CURVE keys and
    /// `.invalidConfiguration` for a namespace, directory, host or port range libzmq
    /// cannot use.
    public func validate() throws(BusError) {
        guard Set(services).count == services.count else {
            throw BusError(.invalidConfiguration("the layout lists a service twice"))
        }
        switch transport {
        case let .inproc(namespace):
            let allowed = namespace.utf8.allSatisfy { byte in
                (0x21...0x7E).contains(byte) && byte != UInt8(ascii: "/")
            }
            guard !namespace.isEmpty, namespace.utf8.count <= 128, allowed else {
                throw BusError(.invalidConfiguration("an inproc namespace is 1...128 printable ASCII characters without `/`, not \"\(namespace)\""))
            }
        case let .ipc(directory):
            guard directory.hasPrefix("/"), !directory.utf8.contains(0) else {
                throw BusError(.invalidConfiguration("the ipc directory must be an absolute path, not \"\(directory)\""))
            }
            let longest = services.map(\.rawValue.utf8.count).max() ?? 0
            let pathLength = BusLayout.socketPath(directory: directory, name: String(repeating: "x", count: longest), suffix: "events").utf8.count
            guard pathLength <= BusLayout.maximumSocketPathLength else {
                throw BusError(.invalidConfiguration("ipc socket paths under \(directory) would be \(pathLength) bytes; the limit is \(BusLayout.maximumSocketPathLength): use a shorter directory"))
            }
        case let .tcp(host, basePort, curve):
            guard let curve else {
                throw BusError(.insecureEndpoint("the tcp transport to \(host) has no CURVE keys; the bus never carries requests or events over plain tcp (pass `curve:` with the node's CurveKeys, or use ipc on one host)"))
            }
            try curve.validate()
            for name in [host] + Array(hosts.values) {
                guard !name.isEmpty, name.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "/") }) else {
                    throw BusError(.invalidConfiguration("\"\(name)\" is not a tcp host"))
                }
            }
            guard basePort > 0, Int(basePort) + 2 * services.count - 1 <= Int(UInt16.max) else {
                throw BusError(.invalidConfiguration("tcp base port \(basePort) leaves no room for \(services.count) services (two ports each)"))
            }
        }
    }

    /// Where `service` receives requests (its ROUTER binds, clients' DEALERs connect).
    /// On tcp a service missing from `services` has no port: its endpoint names port 0,
    /// and servers, clients and subscribers refuse it.
    public func rpcEndpoint(for service: ServiceName) -> String {
        (try? endpoint(for: service, events: false)) ?? unassignedEndpoint
    }

    /// Where `service` publishes events (its PUB binds, SUBs connect).
    public func eventEndpoint(for service: ServiceName) -> String {
        (try? endpoint(for: service, events: true)) ?? unassignedEndpoint
    }

    private var unassignedEndpoint: String {
        if case let .tcp(host, _, _) = transport { return "tcp://\(host):0" }
        return ""
    }

    /// The endpoint, or why this layout cannot give one; what the nodes use.
    func checkedEndpoint(for service: ServiceName, events: Bool) throws(BusError) -> String {
        try validate()
        return try endpoint(for: service, events: events)
    }

    private func endpoint(for service: ServiceName, events: Bool) throws(BusError) -> String {
        let suffix = events ? "events" : "rpc"
        switch transport {
        case let .inproc(namespace):
            return "inproc://lnp-bus/\(namespace)/\(service.rawValue)/\(suffix)"
        case let .ipc(directory):
            let path = BusLayout.socketPath(directory: directory, name: service.rawValue, suffix: suffix)
            guard path.utf8.count <= BusLayout.maximumSocketPathLength else {
                throw BusError(.invalidConfiguration("the ipc socket path \(path) is longer than \(BusLayout.maximumSocketPathLength) bytes"))
            }
            return "ipc://" + path
        case let .tcp(host, basePort, _):
            guard let slot = services.firstIndex(of: service) else {
                throw BusError(.invalidConfiguration("\(service) has no tcp port: add it to the layout's services"))
            }
            let port = Int(basePort) + 2 * slot + (events ? 1 : 0)
            let serviceHost = hosts[service] ?? host
            let printedHost = serviceHost.contains(":") && !serviceHost.hasPrefix("[") ? "[\(serviceHost)]" : serviceHost
            return "tcp://\(printedHost):\(port)"
        }
    }

    static func socketPath(directory: String, name: String, suffix: String) -> String {
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return "\(base)/bus-\(name).\(suffix)"
    }

    /// The socket file behind an `ipc://` endpoint.
    static func socketFile(of endpoint: String) -> String? {
        endpoint.hasPrefix("ipc://") ? String(endpoint.dropFirst("ipc://".count)) : nil
    }

    var curve: CurveKeys? {
        if case let .tcp(_, _, curve) = transport { return curve }
        return nil
    }

    /// Whether libzmq reports connection events for this transport (it does not for inproc).
    var reportsConnections: Bool {
        if case .inproc = transport { return false }
        return true
    }
}
