import NIOCore

/// What the gateway's response cache does with a request every filter admitted, whichever
/// codec carried it (`HTTPProxyHandler+Cache.swift` writes the answer as HTTP/1.1 bytes,
/// `HTTP2StreamExchange+Gateway.swift` as HTTP/2 frames). Only GET and HEAD on a rule with
/// `cache:` are the cache's: a hit (or 304 for a matching `If-None-Match`), a wait behind a
/// fetch of the same key already in flight, or a miss that goes upstream (filling the cache
/// when it leads). Counts `sidecar_cache_requests_total` and marks misses `x-mesh-cache: miss`.
enum GatewayCacheLookup {
    typealias StateMachine = ResponseCacheStateMachine<CachedResponse>

    enum Decision {
        /// Go upstream (not the cache's, a miss, or a bypass; a leading miss fills `exchange.cacheFill`).
        case forward
        /// Answer from the cache.
        case hit(CacheHit)
        /// Park until the fetch in flight for the key ends (`CacheWait.park`).
        case wait(CacheWait)
    }

    /// - Parameter afterWait: the request waited for another's fetch: it neither waits nor leads again.
    static func decide(_ request: AdmittedRequest, caches: GatewayResponseCaches, now: NIODeadline, afterWait: Bool) -> Decision {
        guard let match = request.gatewayMatch, let policy = match.rule.cache,
            request.head.method == .GET || request.head.method == .HEAD
        else { return .forward }
        let exchange = request.exchange
        let cache = caches.cache(for: match, policy: policy)
        let headers = request.head.headers
        let key = exchange.authority.lowercased() + " " + request.target.originForm
        let asked = StateMachine.Request(
            // A verified user (JWT or API key) counts as Authorization: its answers may be its own.
            key: key, isHead: request.head.method == .HEAD, hasAuthorization: request.user != nil || headers.contains("authorization"),
            cacheControl: CacheControl(headers.values(named: "cache-control")),
            ifNoneMatch: headers.firstValue(named: "if-none-match"))
        switch cache.machine.lookup(asked, header: { headers.firstValue(named: $0) }, now: now, mayWait: !afterWait, mayLead: !afterWait) {
        case .hit(let cached, let age, let etag, let notModified):
            cache.count(afterWait ? .coalesced : .hit)
            return .hit(CacheHit(cached: cached, exchange: exchange, age: age, etag: etag, notModified: notModified, bodyless: asked.isHead))
        case .wait:
            return .wait(CacheWait(caches: caches, cache: cache, key: key, exchange: exchange))
        case .fetch:
            exchange.cacheFill = ResponseCacheFill(cache: cache, caches: caches, key: key, requestHeaders: headers)
            markMiss(exchange, cache: cache)
        case .bypass(let reason):
            switch reason {
            case .requestDirective, .authorization, .headMiss: cache.count(.bypass)
            case .waitersFull, .afterWait: cache.count(.miss)
            }
            exchange.addedResponseHeaders.append(missLine)
        }
        return .forward
    }

    static func markMiss(_ exchange: ProxyExchange, cache: GatewayResponseCaches.RuleCache) {
        cache.count(.miss)
        exchange.addedResponseHeaders.append(missLine)
    }

    static let missLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "miss")
    static let hitLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "hit")
}

/// A request parked behind another's fetch of the same key.
struct CacheWait {
    let caches: GatewayResponseCaches
    let cache: GatewayResponseCaches.RuleCache
    let key: String
    let exchange: ProxyExchange

    /// `resume(true)`: the fetch ended, decide again (`afterWait`); `resume(false)`: the wait
    /// timed out, go upstream (counted as a miss). The route timeout armed at admission runs on.
    func park(_ resume: @escaping (Bool) -> Void) {
        let (cache, exchange) = (self.cache, self.exchange)
        caches.wait(for: key, in: cache) { fetched in
            if !fetched { GatewayCacheLookup.markMiss(exchange, cache: cache) }
            resume(fetched)
        }
    }
}

/// An answer from the cache as either codec writes it: the entry's status and fields with the
/// exchange's response changes (the route's `responseHeaders`, CORS) plus `age` and
/// `x-mesh-cache: hit`; or 304 with the entry's validators when `notModified`.
struct CacheHit {
    let cached: CachedResponse
    /// The status the caller gets (304 when `notModified`).
    let status: Int
    let notModified: Bool
    /// HEAD (or 304): the head only.
    let bodyless: Bool
    /// Lines added to the entry's fields (replacing those of the same name), names removed.
    let added: [HTTPHeaderLine]
    let removed: [String]

    init(cached: CachedResponse, exchange: ProxyExchange, age: Int64, etag: String?, notModified: Bool, bodyless: Bool) {
        self.cached = cached
        self.notModified = notModified
        self.bodyless = bodyless || notModified
        self.status = notModified ? 304 : cached.head.status
        let changes = exchange.responseHeaderChanges
        var added = changes.added
        added.append(try! HTTPHeaderLine(name: "age", value: String(age)))
        added.append(GatewayCacheLookup.hitLine)
        self.added = added
        self.removed = changes.removed
    }

    /// RFC 9110 §15.4.5: a 304 carries the validators and caching fields a 200 would, no body.
    var notModifiedFields: [(name: String, value: String)] {
        ["etag", "cache-control", "vary", "expires", "last-modified"].compactMap { name in
            guard !added.contains(where: { $0.name == name }), let value = cached.head.headers.firstValue(named: name) else { return nil }
            return (name, value)
        }
    }
}

extension ProxyExchange {
    /// The lines set on (and names removed from) the response going back, for both codecs:
    /// the gateway's (CORS, `x-mesh-cache`) and the route rule's `responseHeaders`.
    var responseHeaderChanges: (added: [HTTPHeaderLine], removed: [String]) {
        var extra = addedResponseHeaders
        var removed: [String] = []
        if let rule = route?.rule {
            removed = rule.responseHeaders.remove
            for (name, value) in rule.responseHeaders.set.sorted(by: { $0.key < $1.key }) {
                if let line = try? HTTPHeaderLine(name: name, value: value) { extra.append(line) }
            }
        }
        return (extra, removed)
    }
}
