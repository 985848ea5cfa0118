/// Encoding resources back to their config form for `control-plane get -o yaml|json` and the
/// sidecar admin `/config`: every field with its resolved value (defaults included), keys in
/// the order DESIGN.md documents them. The output decodes back to an equal resource.
extension MeshResource {
    public var configValue: ConfigValue {
        var pairs: [(String, ConfigValue)] = [("kind", .string(kind.rawValue)), ("name", .string(name))]
        if let resourceVersion { pairs.append(("resourceVersion", .string(resourceVersion))) }
        switch self {
        case .service(let service):
            pairs.append(("protocol", .string(service.appProtocol.rawValue)))
            if let port = service.port { pairs.append(("port", .int(port))) }
            if !service.addresses.isEmpty { pairs.append(("addresses", .list(service.addresses.map { .string($0) }))) }
        case .instance(let instance):
            pairs += [
                ("service", .string(instance.service)),
                ("address", .string(instance.address)),
                ("port", .int(instance.port)),
                ("labels", .sortedMap(instance.labels)),
                ("health", .string(instance.health.rawValue)),
            ]
            if let ttl = instance.ttl { pairs.append(("ttl", .string(ttl.description))) }
        case .route(let route):
            pairs += [("service", .string(route.service)), ("rules", .list(route.rules.map(\.configValue)))]
        case .trafficPolicy(let policy):
            pairs += [("service", .string(policy.service))] + policy.configPairs
        case .authorizationPolicy(let policy):
            pairs += [
                ("service", .string(policy.service)),
                ("default", .string(policy.defaultAction.rawValue)),
                ("allow", .list(policy.allow.map(\.configValue))),
            ]
        case .gatewayRoute(let route):
            pairs += route.configPairs
        case .authenticationPolicy(let policy):
            pairs += policy.configPairs
        }
        return .map(pairs)
    }

    /// Canonical block YAML, one document, ending in a newline.
    public var yaml: String { configValue.yaml }

    /// Compact JSON, one object.
    public var json: String { configValue.json }

    /// A multi-document YAML stream (`---` between documents).
    public static func yaml(_ resources: [MeshResource]) -> String {
        resources.map(\.yaml).joined(separator: "---\n")
    }

    /// A JSON array.
    public static func json(_ resources: [MeshResource]) -> String {
        ConfigValue.list(resources.map(\.configValue)).json
    }
}

extension RouteRule {
    var configValue: ConfigValue {
        var retry: [(String, ConfigValue)] = [("attempts", .int(retries.attempts))]
        if let perTry = retries.perTryTimeout { retry.append(("perTryTimeout", .string(perTry.description))) }
        retry += [
            ("retryOn", .list(retries.retryOn.map(\.configValue))),
            ("backoff", .map([
                ("base", .string(retries.backoff.base.description)),
                ("max", .string(retries.backoff.max.description)),
            ])),
        ]

        var pairs: [(String, ConfigValue)] = [
            ("match", match.configValue),
            ("backends", .list(backends.map { .map([("subset", .sortedMap($0.subset)), ("weight", .int($0.weight))]) })),
            ("timeout", .string(timeout.description)),
            ("retries", .map(retry)),
            ("requestHeaders", requestHeaders.configValue),
            ("responseHeaders", responseHeaders.configValue),
        ]
        if let fault {
            var faultPairs: [(String, ConfigValue)] = []
            if let delay = fault.delay {
                faultPairs.append(("delay", .map([
                    ("percent", .percent(delay.percent)), ("duration", .string(delay.duration.description)),
                ])))
            }
            if let abort = fault.abort {
                var abortPairs: [(String, ConfigValue)] = [("percent", .percent(abort.percent)), ("status", .int(abort.status))]
                if let grpcStatus = abort.grpcStatus { abortPairs.append(("grpcStatus", .int(grpcStatus))) }
                faultPairs.append(("abort", .map(abortPairs)))
            }
            pairs.append(("fault", .map(faultPairs)))
        }
        if let mirror {
            pairs.append(("mirror", .map([("subset", .sortedMap(mirror.subset)), ("percent", .percent(mirror.percent))])))
        }
        if let rateLimit {
            pairs.append(("rateLimit", .map([
                ("requestsPerSecond", .int(rateLimit.requestsPerSecond)), ("burst", .int(rateLimit.burst)),
            ])))
        }
        return .map(pairs)
    }
}

extension RouteMatch {
    var configValue: ConfigValue {
        var pairs: [(String, ConfigValue)] = []
        switch path {
        case .prefix(let prefix): pairs.append(("pathPrefix", .string(prefix)))
        case .exact(let path): pairs.append(("path", .string(path)))
        }
        if let method { pairs.append(("method", .string(method))) }
        if !headers.isEmpty { pairs.append(("headers", .sortedMap(headers))) }
        return .map(pairs)
    }
}

extension RetryCondition {
    var configValue: ConfigValue {
        if case .status(let code) = self { return .int(code) }
        return .string(description)
    }
}

extension HeaderRewrite {
    var configValue: ConfigValue {
        .map([("set", .sortedMap(self.set)), ("remove", .list(remove.map { .string($0) }))])
    }
}

extension TrafficPolicy {
    var configPairs: [(String, ConfigValue)] {
        var pairs: [(String, ConfigValue)] = [
            ("loadBalancer", .string(loadBalancer.rawValue)),
            ("circuitBreaker", .map([
                ("maxConnections", .int(circuitBreaker.maxConnections)),
                ("maxPendingRequests", .int(circuitBreaker.maxPendingRequests)),
                ("maxRequests", .int(circuitBreaker.maxRequests)),
                ("maxRetries", .int(circuitBreaker.maxRetries)),
            ])),
            ("outlierDetection", .map([
                ("consecutive5xx", .int(outlierDetection.consecutive5xx)),
                ("consecutiveGatewayErrors", .int(outlierDetection.consecutiveGatewayErrors)),
                ("interval", .string(outlierDetection.interval.description)),
                ("baseEjectionTime", .string(outlierDetection.baseEjectionTime.description)),
                ("maxEjectionPercent", .percent(outlierDetection.maxEjectionPercent)),
            ])),
            ("retryBudget", .map([
                ("percent", .percent(retryBudget.percent)), ("minPerSecond", .int(retryBudget.minPerSecond)),
            ])),
        ]
        if let rateLimit {
            pairs.append(("rateLimit", .map([
                ("requestsPerSecond", .int(rateLimit.requestsPerSecond)),
                ("burst", .int(rateLimit.burst)),
                ("perCaller", .bool(rateLimit.perCaller)),
            ])))
        }
        pairs.append(("connectTimeout", .string(connectTimeout.description)))
        if let fallback {
            pairs.append(("fallback", .map([
                ("status", .int(fallback.status)), ("headers", .sortedMap(fallback.headers)), ("body", .string(fallback.body)),
            ])))
        }
        return pairs
    }
}

extension AuthorizationPolicy.Rule {
    var configValue: ConfigValue {
        var pairs: [(String, ConfigValue)] = [
            ("from", .list(from.map { .string($0) })),
            ("methods", .list(methods.map { .string($0) })),
        ]
        if let pathPrefix { pairs.append(("pathPrefix", .string(pathPrefix))) }
        return .map(pairs)
    }
}
