#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Loading and validating a sidecar bootstrap file; every problem comes back in one
/// `ConfigError`, each issue naming file, line and key path.
extension SidecarConfiguration {
    /// Reads and decodes the file at `path`; relative paths inside resolve against its directory.
    public static func load(contentsOf path: String) throws(ConfigError) -> SidecarConfiguration {
        let text: String
        do {
            text = try String.readingFile(path)
        } catch {
            throw ConfigError(ConfigIssue(file: path, path: "", message: "cannot read the file: \(error.message)"))
        }
        let directory = directoryPart(of: path)
        return try decode(yaml: text, fileName: path, baseDirectory: directory)
    }

    /// Decodes bootstrap YAML; `baseDirectory` is where relative file paths point from
    /// (empty: leave them relative to the working directory).
    public static func decode(
        yaml: String, fileName: String? = nil, baseDirectory: String = ""
    ) throws(ConfigError) -> SidecarConfiguration {
        let root: YAMLNode?
        do {
            root = try YAMLParser.compose(yaml: yaml)
        } catch {
            throw ConfigError(MeshResourceDecoder.issueForYAMLError(error, file: fileName))
        }
        let reader = ConfigReader(file: fileName)
        guard let root, !ConfigReader.isNull(root) else {
            throw ConfigError(ConfigIssue(file: fileName, path: "", message: "the file is empty; it needs at least service, inbound and tls or controlPlane"))
        }
        if let issue = ConfigReader.sizeIssue(root, file: fileName) { throw ConfigError(issue) }
        guard let map = reader.mapping(root, path: "") else { throw reader.error() ?? ConfigError(issues: []) }
        let configuration = decode(map, baseDirectory: baseDirectory)
        map.finish()
        if let error = reader.error() { throw error }
        return configuration
    }

    private static func decode(_ map: MappingReader, baseDirectory: String) -> SidecarConfiguration {
        let reader = map.reader
        let service = map.serviceName() ?? ""
        var inbound = Inbound(app: HostPort(host: "127.0.0.1", port: 0))
        if let inboundMap = map.mapping("inbound", required: !map.has("gateway")) {
            inbound.listen = inboundMap.hostPort("listen") ?? MeshDefaults.inboundListen
            inbound.app = inboundMap.hostPort("app", required: true) ?? inbound.app
            inbound.appProtocol = inboundMap.oneOf("protocol") ?? .http
            inbound.transparent = inboundMap.bool("transparent") ?? false
            if inbound.transparent, let host = HostPort.loopbackHost(inbound.listen.host) {
                // Redirected connections arrive at the interface's address, never at loopback.
                reader.report("inbound.transparent needs inbound.listen on an address other hosts reach "
                              + "(e.g. 0.0.0.0:15006), not \(host)", path: "inbound.listen",
                              at: inboundMap.optional("listen") ?? inboundMap.node)
            }
            inboundMap.finish()
        }
        // The front door has external listeners instead of an inbound (DESIGN.md "Gateway").
        let gateway = map.mapping("gateway").map { gatewayMap in
            defer { gatewayMap.finish() }
            return GatewayListeners.decode(gatewayMap, baseDirectory: baseDirectory)
        }
        if gateway != nil, map.has("inbound") {
            reader.report("give either inbound (a service's sidecar) or gateway (the front door), not both",
                          path: "gateway", at: map.optional("gateway"))
        }
        var outbound = Outbound()
        if let outboundMap = map.mapping("outbound") {
            outbound.listen = outboundMap.hostPort("listen") ?? MeshDefaults.outboundListen
            outbound.transparent = outboundMap.bool("transparent") ?? false
            let host = outbound.listen.host
            if outbound.transparent, HostPort.loopbackHost(host) == nil, !HostPort.isUnspecified(host) {
                // The rules redirect to 127.0.0.1 (nft `redirect` from the output hook).
                reader.report("outbound.transparent needs outbound.listen on loopback or every address "
                              + "(e.g. 127.0.0.1:15001), not \(host)", path: "outbound.listen",
                              at: outboundMap.optional("listen") ?? outboundMap.node)
            }
            outbound.unknown = outboundMap.oneOf("unknown") ?? .passthrough
            for element in outboundMap.list("tcp") ?? [] {
                guard let tcpMap = reader.mapping(element.node, path: element.path) else { continue }
                let listen = tcpMap.hostPort("listen", required: true)
                let upstream = tcpMap.serviceName()
                if let listen, let upstream {
                    outbound.tcp.append(TCPUpstream(listen: listen, service: upstream))
                }
                tcpMap.finish()
            }
            outboundMap.finish()
        }
        var adminListen = MeshDefaults.adminListen
        if let adminMap = map.mapping("admin") {
            adminListen = adminMap.hostPort("listen") ?? MeshDefaults.adminListen
            adminMap.finish()
        }
        var trustDomain = MeshDefaults.trustDomain
        if let node = map.optional("trustDomain"), let text = reader.string(node, path: "trustDomain") {
            if HostPort.isHostName(text) && text == text.lowercased() {
                trustDomain = text
            } else {
                reader.report("\"\(text)\" is not a trust domain (a lowercase DNS name, e.g. mesh.local)",
                              path: "trustDomain", at: node)
            }
        }
        let tls = decodeTLS(map, baseDirectory: baseDirectory)
        let controlPlane = decodeControlPlane(map, baseDirectory: baseDirectory)
        if !map.has("tls") && !map.has("controlPlane") {
            reader.report("needs tls (static mode: cert, key, trustBundle) or controlPlane (dynamic mode: address, tokenFile, caFile)",
                          path: "", at: map.node)
        }
        var decoded: [MeshResourceDecoder.DecodedResource] = []
        for element in map.list("resources") ?? [] {
            if var resource = MeshResource.decode(element.node, path: element.path, reader: reader) {
                // A JWKS file is named relative to this file, like the certificates.
                if case .authenticationPolicy(var policy) = resource, let file = policy.jwt?.jwksFile {
                    policy.jwt?.jwksFile = resolve(path: file, against: baseDirectory)
                    resource = .authenticationPolicy(policy)
                }
                decoded.append(.init(resource: resource, label: element.path, node: element.node))
            }
        }
        MeshResourceDecoder.checkUnique(decoded, reader: reader)
        if let problem = SnapshotCheck.gatewayProblem(decoded.map(\.resource)) {
            reader.report(problem, path: "resources", at: map.optional("resources"))
        }
        let configuration = SidecarConfiguration(
            service: service, inbound: inbound, outbound: outbound, adminListen: adminListen,
            trustDomain: trustDomain, tls: tls, controlPlane: controlPlane, resources: decoded.map(\.resource),
            tracing: decodeTracing(map),
            gateway: gateway)
        checkDistinctListeners(configuration, map: map)
        checkMode(configuration, map: map)
        return configuration
    }

    private static func decodeTLS(_ map: MappingReader, baseDirectory: String) -> TLSFiles? {
        guard let tlsMap = map.mapping("tls") else { return nil }
        defer { tlsMap.finish() }
        let cert = tlsMap.filePath("cert", baseDirectory: baseDirectory)
        let key = tlsMap.filePath("key", baseDirectory: baseDirectory)
        let bundle = tlsMap.filePath("trustBundle", baseDirectory: baseDirectory)
        guard let cert, let key, let bundle else { return nil }
        return TLSFiles(certificate: cert, privateKey: key, trustBundle: bundle)
    }

    private static func decodeControlPlane(_ map: MappingReader, baseDirectory: String) -> ControlPlane? {
        guard let controlMap = map.mapping("controlPlane") else { return nil }
        defer { controlMap.finish() }
        // One address, or a list of replicas (tried in order, the next on failure).
        var addresses: [String] = []
        var addressValid = true
        if let node = controlMap.required("address") {
            let path = controlMap.childPath("address")
            let texts = node.sequence != nil ? map.reader.stringList(node, path: path) : map.reader.string(node, path: path).map { [$0] }
            for (index, text) in (texts ?? []).enumerated() {
                let rest = text.hasPrefix("https://") ? String(text.dropFirst("https://".count)) : nil
                if let rest, case .success = HostPort.parse(rest.hasSuffix("/") ? String(rest.dropLast()) : rest) {
                    addresses.append(text)
                } else {
                    addressValid = false
                    map.reader.report("\"\(text)\" is not a control plane address (https://host:port)",
                                      path: node.sequence != nil ? path + "[\(index)]" : path, at: node)
                }
            }
            if texts?.isEmpty == true {
                addressValid = false
                map.reader.report("give at least one control plane address (https://host:port)", path: path, at: node)
            }
        }
        let address = addressValid ? addresses.first : nil
        let tokenFile = controlMap.filePath("tokenFile", baseDirectory: baseDirectory)
        let caFile = controlMap.filePath("caFile", baseDirectory: baseDirectory)
        let advertise = controlMap.hostPort("advertise")
        if let advertise, advertise.port == 0 || HostPort.isUnspecified(advertise.host) {
            map.reader.report("\(advertise) cannot be dialled by other sidecars (give a routable address and a port)",
                              path: controlMap.childPath("advertise"), at: controlMap.optional("advertise"))
        }
        let labels = controlMap.stringMap("labels") ?? [:]
        let dependencies = controlMap.stringList("dependencies")
        var stateDirectory = SidecarConfiguration.resolve(path: MeshDefaults.stateDirectory, against: baseDirectory)
        if controlMap.optional("stateDir") != nil {
            guard let path = controlMap.filePath("stateDir", baseDirectory: baseDirectory) else { return nil }
            stateDirectory = path
        }
        guard let address, let tokenFile, let caFile else { return nil }
        return ControlPlane(
            address: address, tokenFile: tokenFile, caFile: caFile, advertise: advertise, labels: labels,
            dependencies: dependencies, stateDirectory: stateDirectory, moreAddresses: Array(addresses.dropFirst()))
    }

    /// `tracing: { otlpEndpoint: http://127.0.0.1:4318, sampling: 100 }`.
    private static func decodeTracing(_ map: MappingReader) -> Tracing? {
        guard let tracingMap = map.mapping("tracing") else { return nil }
        defer { tracingMap.finish() }
        let sampling = tracingMap.percent("sampling") ?? 100
        guard let text = tracingMap.string("otlpEndpoint", required: true) else { return nil }
        switch Tracing.parseEndpoint(text) {
        case .success(let (endpoint, path)):
            return Tracing(endpoint: endpoint, path: path, sampling: sampling)
        case .failure(let problem):
            map.reader.report("\"\(text)\" \(problem.reason)",
                              path: tracingMap.childPath("otlpEndpoint"), at: tracingMap.optional("otlpEndpoint"))
            return nil
        }
    }

    /// Exactly one identity source; a registered address others can dial.
    private static func checkMode(_ configuration: SidecarConfiguration, map: MappingReader) {
        if map.has("tls") && map.has("controlPlane") {
            map.reader.report("give either tls (static mode) or controlPlane (dynamic mode), not both: "
                              + "in dynamic mode the control plane issues the certificate", path: "controlPlane",
                              at: map.optional("controlPlane") ?? map.node)
        }
        if let controlPlane = configuration.controlPlane, controlPlane.advertise == nil, configuration.gateway == nil,
           HostPort.isUnspecified(configuration.inbound.listen.host) {
            map.reader.report("inbound.listen is \(configuration.inbound.listen): set controlPlane.advertise to the "
                              + "host:port other sidecars dial to reach this one", path: "controlPlane",
                              at: map.optional("controlPlane") ?? map.node)
        }
    }

    /// Two listeners on one address would fail at bind time with a less helpful message.
    private static func checkDistinctListeners(_ configuration: SidecarConfiguration, map: MappingReader) {
        var seen: [HostPort: String] = [:]
        var listeners: [(String, HostPort)] = [
            ("outbound.listen", configuration.outbound.listen),
            ("admin.listen", configuration.adminListen),
        ]
        if let gateway = configuration.gateway {
            if let http = gateway.http { listeners.append(("gateway.http.listen", http.listen)) }
            if let https = gateway.https { listeners.append(("gateway.https.listen", https.listen)) }
        } else {
            listeners.insert(("inbound.listen", configuration.inbound.listen), at: 0)
        }
        for (index, upstream) in configuration.outbound.tcp.enumerated() {
            listeners.append(("outbound.tcp[\(index)].listen", upstream.listen))
        }
        for (path, address) in listeners where address.port != 0 {
            if let first = seen[address] {
                map.reader.report("\(address) is already used by \(first)", path: path, at: node(at: path, in: map.node))
            } else {
                seen[address] = path
            }
        }
    }
}

/// The node at a dotted path like `outbound.tcp[0].listen`, for its line; the root if absent.
private func node(at path: String, in root: YAMLNode) -> YAMLNode {
    var current = root
    for component in path.split(separator: ".") {
        let parts = component.split(separator: "[")
        guard let key = parts.first, let next = current[String(key)] else { return root }
        current = next
        for index in parts.dropFirst() {
            guard let position = Int(index.dropLast()), let items = current.sequence, items.indices.contains(position)
            else { return root }
            current = items[position]
        }
    }
    return current
}

extension MappingReader {
    /// A required file path, resolved against `baseDirectory` when relative.
    func filePath(_ key: String, baseDirectory: String) -> String? {
        guard let text = string(key, required: true) else { return nil }
        guard !text.isEmpty else {
            reader.report("is empty (a file path)", path: childPath(key), at: optional(key))
            return nil
        }
        return SidecarConfiguration.resolve(path: text, against: baseDirectory)
    }
}

/// `NSString.deletingLastPathComponent`: `/etc/mesh/web.yaml` → `/etc/mesh`, `web.yaml` → "",
/// `/web.yaml` → `/`.
private func directoryPart(of path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "" }
    if slash == trimmed.startIndex { return "/" }
    var directory = trimmed[..<slash]
    while directory.count > 1, directory.hasSuffix("/") { directory = directory.dropLast() }
    return String(directory)
}

extension SidecarConfiguration {
    /// `certs/web.pem` against `/etc/mesh` is `/etc/mesh/certs/web.pem`; absolute paths stay.
    static func resolve(path: String, against baseDirectory: String) -> String {
        guard !path.hasPrefix("/"), !baseDirectory.isEmpty else { return path }
        let base = baseDirectory.hasSuffix("/") ? String(baseDirectory.dropLast()) : baseDirectory
        let relative = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        return "\(base)/\(relative)"
    }
}
