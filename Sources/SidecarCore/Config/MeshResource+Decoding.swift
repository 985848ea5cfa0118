
/// Decoding one resource mapping (`kind: …`) into a `MeshResource`, recording every issue in
/// the reader. Shared by the control plane's multi-document input and a sidecar's
/// `resources:` list.
extension MeshResource {
    /// The resource, or nil if its mapping had any issue (all recorded in `reader`).
    package static func decode(_ node: YAMLNode, path: String, reader: ConfigReader) -> MeshResource? {
        let issuesBefore = reader.issues.count
        guard let map = reader.mapping(node, path: path) else { return nil }
        guard let kind = decodeKind(map) else {
            // Without a kind the other keys cannot be checked; report only the kind.
            return nil
        }
        let common = Common(map, readsName: kind != .service)
        let resource: MeshResource
        switch kind {
        case .service: resource = .service(MeshService.decode(map, common: common))
        case .instance: resource = .instance(Instance.decode(map, common: common))
        case .route: resource = .route(Route.decode(map, common: common))
        case .trafficPolicy: resource = .trafficPolicy(TrafficPolicy.decode(map, common: common))
        case .authorizationPolicy: resource = .authorizationPolicy(AuthorizationPolicy.decode(map, common: common))
        case .gatewayRoute: resource = .gatewayRoute(GatewayRoute.decode(map, common: common))
        case .authenticationPolicy: resource = .authenticationPolicy(AuthenticationPolicy.decode(map, common: common))
        }
        map.finish()
        return reader.issues.count == issuesBefore ? resource : nil
    }

    private static func decodeKind(_ map: MappingReader) -> ResourceKind? {
        guard let node = map.required("kind"), let text = map.reader.string(node, path: map.childPath("kind")) else {
            return nil
        }
        if let kind = ResourceKind(rawValue: text) { return kind }
        let allowed = ResourceKind.allCases.map(\.rawValue).joined(separator: ", ")
        let hint = ResourceKind(word: text).map { "did you mean \"\($0.rawValue)\"?" } ?? "one of: \(allowed)"
        map.reader.report("\"\(text)\" is not a resource kind (\(hint))", path: map.childPath("kind"), at: node)
        return nil
    }

    /// The fields every kind shares.
    struct Common {
        var name: String?
        var resourceVersion: String?

        init(_ map: MappingReader, readsName: Bool) {
            if readsName {
                name = map.optional("name").flatMap { map.reader.resourceName($0, path: map.childPath("name")) }
            }
            resourceVersion = map.optional("resourceVersion").flatMap {
                map.reader.resourceVersion($0, path: map.childPath("resourceVersion"))
            }
        }
    }
}

extension MappingReader {
    /// The `service` a Route, TrafficPolicy, AuthorizationPolicy or Instance is about.
    func serviceName(_ key: String = "service", required: Bool = true) -> String? {
        guard let node = required ? self.required(key) : optional(key) else { return nil }
        return reader.serviceName(node, path: childPath(key))
    }

    /// A label subset: label names to values.
    func labels(_ key: String) -> [String: String]? {
        stringMap(key)
    }
}

extension MeshService {
    static func decode(_ map: MappingReader, common: MeshResource.Common) -> MeshService {
        // A Service is named by `name` itself: it has no `service` key.
        let name = map.required("name").flatMap { map.reader.serviceName($0, path: map.childPath("name")) }
        var addresses: [String] = []
        for element in map.list("addresses") ?? [] {
            guard let text = map.reader.string(element.node, path: element.path) else { continue }
            // IP literals only: an intercepted connection carries an address, never a name.
            guard HostPort.isIPv4(text) || HostPort.isIPv6(text) else {
                map.reader.report("\"\(text)\" is not an IP address (a virtual IP of the service, e.g. 10.96.0.10)",
                                  path: element.path, at: element.node)
                continue
            }
            addresses.append(text)
        }
        return MeshService(
            name: name ?? "",
            resourceVersion: common.resourceVersion,
            appProtocol: map.oneOf("protocol") ?? .http,
            port: map.int("port", range: 1...65535),
            addresses: addresses
        )
    }
}

extension Instance {
    static func decode(_ map: MappingReader, common: MeshResource.Common) -> Instance {
        let service = map.serviceName()
        var address: String?
        if let node = map.required("address"), let text = map.reader.string(node, path: map.childPath("address")) {
            if HostPort.isValidHost(text) {
                address = text
            } else {
                map.reader.report("\"\(text)\" is not an IP address or host name (no port, no brackets)",
                                  path: map.childPath("address"), at: node)
            }
        }
        let port = map.int("port", range: 1...65535, required: true)
        return Instance(
            name: common.name,
            resourceVersion: common.resourceVersion,
            service: service ?? "",
            address: address ?? "",
            port: port ?? 0,
            labels: map.labels("labels") ?? [:],
            health: map.oneOf("health") ?? .healthy,
            ttl: map.duration("ttl")
        )
    }
}

extension AuthorizationPolicy {
    static func decode(_ map: MappingReader, common: MeshResource.Common) -> AuthorizationPolicy {
        let service = map.serviceName()
        let defaultAction: Action = map.oneOf("default") ?? MeshDefaults.authorizationPolicyDefault
        var rules: [Rule] = []
        for element in map.list("allow") ?? [] {
            guard let ruleMap = map.reader.mapping(element.node, path: element.path) else { continue }
            var rule = Rule()
            if let from = ruleMap.list("from") {
                rule.from = from.compactMap { map.reader.serviceName($0.node, path: $0.path) }
            }
            if let methods = ruleMap.list("methods") {
                rule.methods = methods.compactMap { map.reader.method($0.node, path: $0.path) }
            }
            rule.pathPrefix = ruleMap.optional("pathPrefix").flatMap {
                map.reader.httpPath($0, path: ruleMap.childPath("pathPrefix"))
            }
            ruleMap.finish()
            rules.append(rule)
        }
        return AuthorizationPolicy(
            name: common.name, resourceVersion: common.resourceVersion, service: service ?? "",
            defaultAction: defaultAction, allow: rules)
    }
}
