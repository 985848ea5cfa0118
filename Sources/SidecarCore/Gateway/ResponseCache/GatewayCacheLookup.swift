import NIOCore

/// What the gateway's response cache does with a request every filter admitted, whichever
/// codec carried it (`HTTPProxyHandler+Cache.swift` writes the answer as HTTP/1.1 bytes,
/// `HTTP2StreamExchange+Gateway.swift` as HTTP/2 frames). Only GET and HEAD on a rule with
/// `cache:` are the cache's: a hit (or 304 for a matching `If-None-Match`), a wait behind a
/// fetch of the same key already in flight (on any loop: the rule's store is the process's),
/// a revalidation of an entry that may not be used unvalidated (stale, stored `no-cache`, or
/// the request's `no-cache` / `Pragma: no-cache` / `max-age` / `min-fresh`: the request goes
/// upstream with the entry's validators), a miss that goes upstream (filling the cache when it
/// leads), or 504 `not-cached` for `only-if-cached` without an entry. Counts
/// `sidecar_cache_requests_total` and marks misses `x-mesh-cache: miss`. The request's
/// directives are read only here, for a rule with `cache:`.
enum GatewayCacheLookup {
    typealias StateMachine = ResponseCacheStateMachine<CachedResponse>

    enum Decision {
        /// Go upstream (not the cache's, a miss, or a bypass; a leading miss fills `exchange.cacheFill`).
        case forward
        /// Answer from the cache.
        case hit(CacheHit)
        /// Park until the fetch in flight for the key ends (`CacheWait.park`).
        case wait(CacheWait)
        /// Go upstream with this request instead: the stale entry's validators set
        /// (`If-None-Match`, `If-Modified-Since`); a 304 that selects the entry is answered
        /// from it. One that does not: `exchange.cacheFill.resend` must send the caller's
        /// request (the one decided on) again, with the fill's `refetch()`.
        case revalidate(AdmittedRequest)
        /// Answer this error (504 `not-cached`: `only-if-cached` without an entry it may have).
        case refuse(ProxyError)
    }

    /// - Parameter afterWait: when the request began waiting for another's fetch (nil: it did
    ///   not wait): it neither waits nor leads again, and takes an entry stored since.
    static func decide(_ request: AdmittedRequest, caches: LoopResponseCaches, now: NIODeadline, afterWait: NIODeadline?) -> Decision {
        guard let match = request.gatewayMatch, let policy = match.rule.cache,
            request.head.method == .GET || request.head.method == .HEAD
        else { return .forward }
        let exchange = request.exchange
        let cache = caches.cache(for: match, policy: policy)
        let headers = request.head.headers
        let asked = Self.asked(request)
        let key = asked.key
        switch cache.lookup(asked, header: { headers.firstValue(named: $0) }, now: now, afterWaitSince: afterWait) {
        case .hit(let cached, let age, let etag, let notModified, let stale):
            cache.count(afterWait != nil ? .coalesced : .hit)
            return .hit(CacheHit(
                cached: cached, exchange: exchange, age: age, etag: etag, notModified: notModified, bodyless: asked.isHead, stale: stale))
        case .notCached:
            markMiss(exchange, cache: cache)
            return .refuse(ProxyError(.notCached, "only-if-cached and no stored response may answer it"))
        case .wait:
            return .wait(CacheWait(cache: cache, key: key, exchange: exchange, since: now))
        case .fetch:
            exchange.cacheFill = ResponseCacheFill(cache: cache, key: key, requestHeaders: headers)
            markMiss(exchange, cache: cache)
        case .revalidate(let stale, let etag, let lastModified):
            // Counted when it ends: `revalidated` for a 304, `miss` otherwise (ResponseCacheFill).
            exchange.cacheFill = ResponseCacheFill(cache: cache, key: key, requestHeaders: headers, revalidating: stale)
            exchange.addedResponseHeaders.append(missLine)
            var conditional = request
            conditional.removedHeaders.append(contentsOf: ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"])
            if let etag, let line = try? HTTPHeaderLine(name: "if-none-match", value: etag) { conditional.addedHeaders.append(line) }
            if let lastModified, let line = try? HTTPHeaderLine(name: "if-modified-since", value: lastModified) {
                conditional.addedHeaders.append(line)
            }
            return .revalidate(conditional)
        case .bypass(let reason):
            switch reason {
            case .requestDirective, .authorization, .headMiss: cache.count(.bypass)
            case .waitersFull, .afterWait: cache.count(.miss)
            }
            exchange.addedResponseHeaders.append(missLine)
        }
        return .forward
    }

    /// What `request` asks of the cache.
    static func asked(_ request: AdmittedRequest) -> StateMachine.Request {
        let headers = request.head.headers
        return StateMachine.Request(
            // A verified user (JWT or API key) counts as Authorization: its answers may be its own.
            key: key(request), isHead: request.head.method == .HEAD,
            hasAuthorization: request.user != nil || headers.contains("authorization"),
            cacheControl: .request(cacheControl: headers.values(named: "cache-control"), pragma: headers.values(named: "pragma")),
            ifNoneMatch: headers.firstValue(named: "if-none-match"))
    }

    /// The entry key: the request's host and target (path and query as sent).
    static func key(_ request: AdmittedRequest) -> String {
        request.exchange.authority.lowercased() + " " + request.target.originForm
    }

    static func markMiss(_ exchange: ProxyExchange, cache: RuleCache) {
        cache.count(.miss)
        exchange.addedResponseHeaders.append(missLine)
    }

    static let missLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "miss")
    static let hitLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "hit")
    static let revalidatedLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "revalidated")
    static let staleLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "stale")
}

/// A request parked behind another's fetch of the same key.
struct CacheWait {
    let cache: RuleCache
    let key: String
    let exchange: ProxyExchange
    /// When the cache said wait: an entry stored or revalidated since then is served after it.
    let since: NIODeadline

    /// Parks on `eventLoop` (the request's), where `resume` is called: with `since` when the
    /// fetch ended (decide again with it as `afterWait`), nil when the wait timed out (go
    /// upstream; counted as a miss). The route timeout armed at admission runs on.
    func park(on eventLoop: EventLoop, _ resume: @escaping (NIODeadline?) -> Void) {
        let (cache, exchange, since) = (self.cache, self.exchange, self.since)
        cache.wait(for: key, on: eventLoop) { fetched in
            if !fetched { GatewayCacheLookup.markMiss(exchange, cache: cache) }
            resume(fetched ? since : nil)
        }
    }
}

/// An answer from the cache as either codec writes it: the entry's status and fields with the
/// exchange's response changes (the route's `responseHeaders`, CORS) plus `age` and
/// `x-mesh-cache: hit` (`revalidated` when a 304 from upstream just refreshed it, `stale` when
/// a request's `max-stale` took it stale); or 304 with the entry's validators when `notModified`.
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

    init(
        cached: CachedResponse, exchange: ProxyExchange, age: Int64, etag: String?, notModified: Bool, bodyless: Bool,
        stale: Bool = false, revalidated: Bool = false
    ) {
        self.cached = cached
        self.notModified = notModified
        self.bodyless = bodyless || notModified
        self.status = notModified ? 304 : cached.head.status
        let changes = exchange.responseHeaderChanges
        var added = changes.added
        if revalidated { added.removeAll { $0.name == "x-mesh-cache" } }  // the miss marked when it went upstream
        added.append(try! HTTPHeaderLine(name: "age", value: String(age)))
        added.append(revalidated ? GatewayCacheLookup.revalidatedLine : stale ? GatewayCacheLookup.staleLine : GatewayCacheLookup.hitLine)
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
        if let rule = route?.rule, !rule.responseHeaders.set.isEmpty || !rule.responseHeaders.remove.isEmpty {
            removed = rule.responseHeaders.remove
            for (name, value) in rule.responseHeaders.set.sorted(by: { $0.key < $1.key }) {
                if let line = try? HTTPHeaderLine(name: name, value: value) { extra.append(line) }
            }
        }
        return (extra, removed)
    }
}

extension CacheHit {
    /// The caller of a revalidation the upstream answered 304 gets the refreshed entry (or 304
    /// itself, when its own `If-None-Match` matches the entry's `ETag`).
    init(revalidated cached: CachedResponse, exchange: ProxyExchange, requestHeaders: HTTPRawHeaders, isHead: Bool) {
        let etag = cached.head.headers.firstValue(named: "etag")
        let notModified = requestHeaders.firstValue(named: "if-none-match").map {
            ResponseCacheStateMachine<CachedResponse>.matches($0, etag: etag)
        } ?? false
        self.init(cached: cached, exchange: exchange, age: 0, etag: etag, notModified: notModified, bodyless: isHead, revalidated: true)
    }
}
