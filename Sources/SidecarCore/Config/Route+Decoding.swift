
/// Decoding a `Route` and its rules, filling every omitted field with its `MeshDefaults` value.
extension Route {
    static func decode(_ map: MappingReader, common: MeshResource.Common) -> Route {
        let service = map.serviceName()
        var rules: [RouteRule] = []
        if let elements = map.list("rules", required: true) {
            if elements.isEmpty {
                map.reader.report("needs at least one rule", path: map.childPath("rules"), at: map.optional("rules"))
            }
            for element in elements {
                guard let ruleMap = map.reader.mapping(element.node, path: element.path) else { continue }
                rules.append(RouteRule.decode(ruleMap))
                ruleMap.finish()
            }
        }
        return Route(name: common.name, resourceVersion: common.resourceVersion, service: service ?? "", rules: rules)
    }
}

extension RouteRule {
    static func decode(_ map: MappingReader) -> RouteRule {
        let reader = map.reader
        var rule = RouteRule()
        if let matchMap = map.mapping("match") {
            rule.match = RouteMatch.decode(matchMap)
            matchMap.finish()
        }
        if let backends = map.list("backends") {
            rule.backends = WeightedBackend.decodeList(backends, reader: reader, path: map.childPath("backends"),
                                                       node: map.optional("backends"))
        }
        rule.timeout = map.duration("timeout") ?? MeshDefaults.requestTimeout
        if let retriesMap = map.mapping("retries") {
            rule.retries = RetryPolicy.decode(retriesMap)
            retriesMap.finish()
        }
        if let rewriteMap = map.mapping("requestHeaders") {
            rule.requestHeaders = HeaderRewrite.decode(rewriteMap)
            rewriteMap.finish()
        }
        if let rewriteMap = map.mapping("responseHeaders") {
            rule.responseHeaders = HeaderRewrite.decode(rewriteMap)
            rewriteMap.finish()
        }
        if let faultMap = map.mapping("fault") {
            rule.fault = FaultInjection.decode(faultMap)
            faultMap.finish()
        }
        if let mirrorMap = map.mapping("mirror") {
            rule.mirror = TrafficMirror(
                subset: mirrorMap.labels("subset") ?? [:],
                percent: mirrorMap.percent("percent") ?? MeshDefaults.mirrorPercent)
            mirrorMap.finish()
        }
        if let limitMap = map.mapping("rateLimit") {
            rule.rateLimit = RateLimit.decode(limitMap, allowsPerCaller: false)
            limitMap.finish()
        }
        return rule
    }
}

extension RouteMatch {
    static func decode(_ map: MappingReader) -> RouteMatch {
        let reader = map.reader
        var match = RouteMatch()
        let prefix = map.optional("pathPrefix").flatMap { reader.httpPath($0, path: map.childPath("pathPrefix")) }
        let exact = map.optional("path").flatMap { reader.httpPath($0, path: map.childPath("path")) }
        if map.has("pathPrefix") && map.has("path") {
            reader.report("set either path or pathPrefix, not both", path: map.path, at: map.node)
        } else if let exact {
            match.path = .exact(exact)
        } else if let prefix {
            match.path = .prefix(prefix)
        }
        match.method = map.optional("method").flatMap { reader.method($0, path: map.childPath("method")) }
        match.headers = map.optional("headers").flatMap { reader.headerMap($0, path: map.childPath("headers")) } ?? [:]
        return match
    }
}

extension WeightedBackend {
    /// At least one backend; each weight 0 or more (0 drains a subset) and a sum above 0.
    static func decodeList(
        _ elements: [(node: YAMLNode, path: String)], reader: ConfigReader, path: String, node: YAMLNode?
    ) -> [WeightedBackend] {
        guard !elements.isEmpty else {
            reader.report("needs at least one backend", path: path, at: node)
            return MeshDefaults.backends
        }
        var backends: [WeightedBackend] = []
        for element in elements {
            guard let map = reader.mapping(element.node, path: element.path) else { continue }
            let weight = map.int("weight", range: 0...1_000_000) ?? 100
            backends.append(WeightedBackend(subset: map.labels("subset") ?? [:], weight: weight))
            map.finish()
        }
        if backends.count == elements.count, backends.reduce(0, { $0 + $1.weight }) == 0 {
            reader.report("weights must add up to more than 0", path: path, at: node)
        }
        return backends
    }
}

extension RetryPolicy {
    static func decode(_ map: MappingReader) -> RetryPolicy {
        let reader = map.reader
        var policy = RetryPolicy.default
        policy.attempts = map.int("attempts", range: 1...10) ?? MeshDefaults.retryAttempts
        policy.perTryTimeout = map.duration("perTryTimeout")
        if let conditions = map.list("retryOn") {
            policy.retryOn = conditions.compactMap { element in
                guard let text = reader.string(element.node, path: element.path) else { return nil }
                guard let condition = RetryCondition(parsing: text) else {
                    let allowed = RetryCondition.keywords.joined(separator: ", ")
                    reader.report("\"\(text)\" is not a retry condition (one of: \(allowed), or a status code 100–599)",
                                  path: element.path, at: element.node)
                    return nil
                }
                return condition
            }
        }
        if let backoffMap = map.mapping("backoff") {
            let base = backoffMap.duration("base") ?? MeshDefaults.backoff.base
            let max = backoffMap.duration("max") ?? Swift.max(MeshDefaults.backoff.max, base)
            if max < base {
                reader.report("max (\(max)) is shorter than base (\(base))", path: backoffMap.childPath("max"),
                              at: backoffMap.optional("max"))
            }
            policy.backoff = RetryBackoff(base: base, max: max)
            backoffMap.finish()
        }
        return policy
    }
}

extension HeaderRewrite {
    static func decode(_ map: MappingReader) -> HeaderRewrite {
        HeaderRewrite(
            set: map.optional("set").flatMap { map.reader.headerMap($0, path: map.childPath("set")) } ?? [:],
            remove: map.optional("remove").flatMap { map.reader.headerNames($0, path: map.childPath("remove")) } ?? [])
    }
}

extension FaultInjection {
    static func decode(_ map: MappingReader) -> FaultInjection {
        var fault = FaultInjection()
        if let delayMap = map.mapping("delay") {
            let percent = delayMap.percent("percent", required: true)
            let duration = delayMap.duration("duration", required: true)
            fault.delay = Delay(percent: percent ?? 0, duration: duration ?? .zero)
            delayMap.finish()
        }
        if let abortMap = map.mapping("abort") {
            let percent = abortMap.percent("percent", required: true)
            // A gRPC call is aborted with `grpcStatus` (trailers-only); other requests with `status`.
            let grpcStatus = abortMap.int("grpcStatus", range: 1...16)
            let status = abortMap.int("status", range: 100...599, required: !abortMap.has("grpcStatus"))
            fault.abort = Abort(percent: percent ?? 0, status: status ?? 500, grpcStatus: grpcStatus)
            abortMap.finish()
        }
        if !map.has("delay") && !map.has("abort") {
            map.reader.report("needs a delay or an abort", path: map.path, at: map.node)
        }
        return fault
    }
}

extension RateLimit {
    static func decode(_ map: MappingReader, allowsPerCaller: Bool) -> RateLimit {
        let rate = map.int("requestsPerSecond", range: 1...Int.max, required: true) ?? 1
        let burst = map.int("burst", range: 1...Int.max)
        let perCaller = allowsPerCaller ? (map.bool("perCaller") ?? false) : false
        return RateLimit(requestsPerSecond: rate, burst: burst, perCaller: perCaller)
    }
}
