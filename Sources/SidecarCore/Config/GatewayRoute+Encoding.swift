/// `GatewayRoute` back to its config form (`control-plane get`, admin `/config`); decodes to an
/// equal value.
extension GatewayRoute {
    var configPairs: [(String, ConfigValue)] {
        [("hosts", .list(hosts.map { .string($0) })), ("rules", .list(rules.map(\.configValue)))]
    }
}

extension GatewayRule {
    var configValue: ConfigValue {
        var pairs: [(String, ConfigValue)] = [("match", match.configValue)]
        if let aggregate {
            pairs.append(("aggregate", .map([
                ("timeout", .string(aggregate.timeout.description)),
                ("calls", .list(aggregate.calls.map {
                    .map([("key", .string($0.key)), ("service", .string($0.service)), ("path", .string($0.path))])
                })),
            ])))
        } else {
            pairs.append(("service", .string(service)))
        }
        if let rewritePathPrefix { pairs.append(("rewrite", .map([("pathPrefix", .string(rewritePathPrefix))]))) }
        if let auth { pairs.append(("auth", .string(auth))) }
        if let rateLimit {
            pairs.append(("rateLimit", .map([
                ("requestsPerSecond", .int(rateLimit.limit.requestsPerSecond)), ("burst", .int(rateLimit.limit.burst)),
                ("key", .string(rateLimit.key.rawValue)),
            ])))
        }
        if let cors {
            var corsPairs: [(String, ConfigValue)] = [
                ("allowOrigins", .list(cors.allowOrigins.map { .string($0) })),
                ("allowMethods", .list(cors.allowMethods.map { .string($0) })),
                ("allowHeaders", .list(cors.allowHeaders.map { .string($0) })),
            ]
            if let maxAge = cors.maxAge { corsPairs.append(("maxAge", .string(maxAge.description))) }
            pairs.append(("cors", .map(corsPairs)))
        }
        if let maxBodyBytes { pairs.append(("maxBodyBytes", .int(maxBodyBytes))) }
        if let cache {
            pairs.append(("cache", .map([
                ("ttl", .string(cache.ttl.description)), ("maxBytes", .int(cache.maxBytes)),
                ("allowAuthorization", .bool(cache.allowAuthorization)),
            ])))
        }
        return .map(pairs)
    }
}
