
/// Decoding a `GatewayRoute` (`kind: GatewayRoute`): a required `name`, optional `hosts`, and
/// at least one rule naming a `service`.
extension GatewayRoute {
    static func decode(_ map: MappingReader, common: MeshResource.Common) -> GatewayRoute {
        let reader = map.reader
        if common.name == nil, !map.has("name") {
            reader.report("is required (a GatewayRoute is named by its name)", path: map.childPath("name"), at: map.node)
        }
        var hosts: [String] = []
        for element in map.list("hosts") ?? [] {
            guard let text = reader.string(element.node, path: element.path) else { continue }
            let host = text.lowercased()
            let bare = host.hasPrefix("*.") ? String(host.dropFirst(2)) : host
            if HostPort.isHostName(bare) {
                hosts.append(host)
            } else {
                reader.report("\"\(text)\" is not a host name (api.example.com, or *.example.com)",
                              path: element.path, at: element.node)
            }
        }
        var rules: [GatewayRule] = []
        if let elements = map.list("rules", required: true) {
            if elements.isEmpty {
                reader.report("needs at least one rule", path: map.childPath("rules"), at: map.optional("rules"))
            }
            for element in elements {
                guard let ruleMap = reader.mapping(element.node, path: element.path) else { continue }
                rules.append(GatewayRule.decode(ruleMap))
                ruleMap.finish()
            }
        }
        return GatewayRoute(name: common.name ?? "", resourceVersion: common.resourceVersion, hosts: hosts, rules: rules)
    }
}

extension GatewayRule {
    static func decode(_ map: MappingReader) -> GatewayRule {
        let reader = map.reader
        let aggregates = map.has("aggregate")
        var rule = GatewayRule(service: map.serviceName(required: !aggregates) ?? "")
        if aggregates, map.has("service") {
            reader.report("an aggregate rule calls its calls' services; remove service", path: map.childPath("service"), at: map.node)
        }
        if let aggregateMap = map.mapping("aggregate") {
            rule.aggregate = GatewayAggregate.decode(aggregateMap)
            aggregateMap.finish()
        }
        if let matchMap = map.mapping("match") {
            rule.match = RouteMatch.decode(matchMap)
            matchMap.finish()
        }
        if let rewriteMap = map.mapping("rewrite") {
            rule.rewritePathPrefix = rewriteMap.optional("pathPrefix").flatMap {
                reader.httpPath($0, path: rewriteMap.childPath("pathPrefix"))
            }
            if rule.rewritePathPrefix == nil, !rewriteMap.has("pathPrefix") {
                reader.report("is required", path: rewriteMap.childPath("pathPrefix"), at: rewriteMap.node)
            }
            if case .exact = rule.match.path {
                reader.report("a path rewrite needs match.pathPrefix (it replaces that prefix)",
                              path: map.childPath("rewrite"), at: rewriteMap.node)
            }
            rewriteMap.finish()
        }
        rule.auth = map.optional("auth").flatMap { reader.resourceName($0, path: map.childPath("auth")) }
        if let limitMap = map.mapping("rateLimit") {
            let limit = RateLimit.decode(limitMap, allowsPerCaller: false)
            rule.rateLimit = GatewayRateLimit(limit: limit, key: limitMap.oneOf("key") ?? .clientIP)
            if rule.rateLimit?.key == .subject || rule.rateLimit?.key == .apiKey, !map.has("auth") {
                reader.report("a rate limit keyed by \(rule.rateLimit!.key.rawValue) needs auth on the rule",
                              path: limitMap.childPath("key"), at: limitMap.node)
            }
            limitMap.finish()
        }
        if let corsMap = map.mapping("cors") {
            rule.cors = CORSPolicy.decode(corsMap)
            corsMap.finish()
        }
        if let node = map.optional("maxBodyBytes") {
            rule.maxBodyBytes = reader.byteSize(node, path: map.childPath("maxBodyBytes"))
        }
        if let cacheMap = map.mapping("cache") {
            rule.cache = GatewayCachePolicy.decode(cacheMap)
            cacheMap.finish()
        }
        if aggregates, map.has("cache") {
            reader.report("an aggregate rule is not cached (its answer is made at the edge)", path: map.childPath("cache"), at: map.node)
        }
        return rule
    }
}

extension GatewayAggregate {
    /// `aggregate: { timeout: 1s, calls: [ { key: user, service: users, path: /me } ] }`.
    static func decode(_ map: MappingReader) -> GatewayAggregate {
        let reader = map.reader
        var calls: [Call] = []
        if let elements = map.list("calls", required: true) {
            if elements.isEmpty { reader.report("needs at least one call", path: map.childPath("calls"), at: map.optional("calls")) }
            for element in elements {
                guard let callMap = reader.mapping(element.node, path: element.path) else { continue }
                let key = callMap.required("key").flatMap { reader.string($0, path: callMap.childPath("key")) }
                if let key, key.isEmpty || key == "_errors" || !key.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x22 && $0 != 0x5C && $0 < 0x7F }) {
                    reader.report("\"\(key)\" is not a key (printable ASCII without quotes or backslashes; not _errors)",
                                  path: callMap.childPath("key"), at: callMap.node)
                } else if let key, calls.contains(where: { $0.key == key }) {
                    reader.report("key \(key) is used twice", path: callMap.childPath("key"), at: callMap.node)
                }
                let service = callMap.serviceName()
                let path = callMap.required("path").flatMap { reader.httpPath($0, path: callMap.childPath("path")) }
                if let key, let service, let path { calls.append(Call(key: key, service: service, path: path)) }
                callMap.finish()
            }
        }
        return GatewayAggregate(timeout: map.duration("timeout", required: true) ?? .seconds(1), calls: calls)
    }
}

extension GatewayCachePolicy {
    /// `cache: { ttl: 30s, maxBytes: 64Mi, allowAuthorization: false }`; both sizes required.
    static func decode(_ map: MappingReader) -> GatewayCachePolicy {
        let reader = map.reader
        let ttl = map.duration("ttl", required: true)
        var maxBytes: Int?
        if let node = map.required("maxBytes") {
            maxBytes = reader.byteSize(node, path: map.childPath("maxBytes"))
            if maxBytes == 0 { reader.report("must be more than 0", path: map.childPath("maxBytes"), at: node) }
        }
        return GatewayCachePolicy(
            ttl: ttl ?? .seconds(1), maxBytes: maxBytes ?? 1, allowAuthorization: map.bool("allowAuthorization") ?? false)
    }
}

extension CORSPolicy {
    static func decode(_ map: MappingReader) -> CORSPolicy {
        let reader = map.reader
        var origins: [String] = []
        for element in map.list("allowOrigins", required: true) ?? [] {
            guard let text = reader.string(element.node, path: element.path) else { continue }
            if text == "*" || ((text.hasPrefix("https://") || text.hasPrefix("http://")) && !text.hasSuffix("/")
                && !text.contains(where: { $0.isWhitespace || $0 == "," })) {
                origins.append(text)
            } else {
                reader.report("\"\(text)\" is not an origin (https://app.example.com, no path, or *)",
                              path: element.path, at: element.node)
            }
        }
        let methods = map.list("allowMethods").map { elements in
            elements.compactMap { reader.method($0.node, path: $0.path) }
        } ?? ["GET", "HEAD", "POST"]
        let headers = map.optional("allowHeaders").flatMap { reader.headerNames($0, path: map.childPath("allowHeaders")) } ?? []
        return CORSPolicy(allowOrigins: origins, allowMethods: methods, allowHeaders: headers, maxAge: map.duration("maxAge"))
    }
}

extension ConfigReader {
    /// A size in bytes: an integer, or with a binary suffix `Ki`, `Mi`, `Gi` (`64Mi`).
    func byteSize(_ node: YAMLNode, path: String) -> Int? {
        if let scalar = node.scalar, let value = Int(scalar.string), value >= 0 { return value }
        guard let text = string(node, path: path) else { return nil }
        let units: [(String, Int)] = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let value = Int(text.dropLast(2)), value >= 0, value <= Int.max / factor { return value * factor }
        }
        report("\"\(text)\" is not a size (bytes, or with Ki, Mi, Gi: 64Mi)", path: path, at: node)
        return nil
    }
}
