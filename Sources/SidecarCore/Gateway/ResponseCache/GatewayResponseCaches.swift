import NIOCore

/// One event loop's response caches, one per gateway rule with `cache:`, and the requests
/// waiting for a fetch in flight. Confined to its loop (part of `LoopContext`): hits take no
/// lock and never hop. Each loop's share of a rule's `maxBytes` is `maxBytes / loops`, so the
/// process stays within the bound; a loop answers only from what it fetched itself, and
/// concurrent misses for one key reach the upstream once per loop at most.
final class GatewayResponseCaches {
    /// How long a request waits for another's fetch of the same key before going upstream
    /// itself (as nginx's `proxy_cache_lock_timeout`).
    static let waitTimeout = TimeAmount.seconds(5)

    typealias StateMachine = ResponseCacheStateMachine<CachedResponse>

    /// The cache of one rule: its decisions, who waits for which key, its metric series.
    final class RuleCache {
        let policy: GatewayCachePolicy
        var machine: StateMachine
        var waiters: [String: [CacheWaiter]] = [:]
        let counters: [CacheResult: Counter]

        init(policy: GatewayCachePolicy, loops: Int, counters: [CacheResult: Counter]) {
            self.policy = policy
            self.machine = StateMachine(limits: .init(
                ttl: policy.ttl.timeAmount, maxBytes: max(1, policy.maxBytes / max(1, loops)),
                allowAuthorization: policy.allowAuthorization))
            self.counters = counters
        }

        func count(_ result: CacheResult) { counters[result]?.increment() }
    }

    private struct RuleID: Hashable {
        let route: String
        let index: Int
    }

    private var rules: [RuleID: RuleCache] = [:]
    private let metrics: SidecarMetrics
    private let loops: Int
    private let eventLoop: EventLoop

    init(eventLoop: EventLoop, metrics: SidecarMetrics, loops: Int) {
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.loops = loops
    }

    /// The cache of `match`'s rule; a rule whose policy changed starts empty (fetches in flight
    /// finish into the cache they started from).
    func cache(for match: GatewayTable.Match, policy: GatewayCachePolicy) -> RuleCache {
        let id = RuleID(route: match.route.name, index: match.ruleIndex)
        if let cache = rules[id], cache.policy == policy { return cache }
        var counters: [CacheResult: Counter] = [:]
        for result in CacheResult.allCases { counters[result] = metrics.cacheRequests(route: match.route.name, result: result) }
        let cache = RuleCache(policy: policy, loops: loops, counters: counters)
        rules[id] = cache
        return cache
    }

    /// Parks a request until the fetch of `key` ends (`resume(true)`: look up again) or the
    /// wait times out (`resume(false)`: go upstream).
    func wait(for key: String, in cache: RuleCache, resume: @escaping (Bool) -> Void) {
        let waiter = CacheWaiter(resume: resume)
        cache.waiters[key, default: []].append(waiter)
        waiter.timer = eventLoop.assumeIsolated().scheduleTask(in: Self.waitTimeout) { [weak cache, weak waiter] in
            guard let cache, let waiter else { return }
            cache.waiters[key]?.removeAll { $0 === waiter }
            waiter.fire(false)
        }
    }

    /// The fetch of `key` ended (stored or not): every waiter looks up again, each in its own
    /// loop task (not inside the leader's response handling).
    func wake(_ key: String, in cache: RuleCache) {
        guard let waiting = cache.waiters.removeValue(forKey: key) else { return }
        for waiter in waiting {
            waiter.timer?.cancel()
            eventLoop.assumeIsolated().execute { waiter.fire(true) }
        }
    }
}

/// A request parked on a fetch in flight; fires once.
final class CacheWaiter {
    private var resume: ((Bool) -> Void)?
    var timer: Scheduled<Void>?

    init(resume: @escaping (Bool) -> Void) {
        self.resume = resume
    }

    func fire(_ fetched: Bool) {
        guard let resume else { return }
        self.resume = nil
        resume(fetched)
    }
}

/// What the cache replays: the upstream's response head as received and its body bytes as
/// relayed (chunk framing included), so a hit is written exactly as the miss was. A response
/// that came as HTTP/2 is kept in the same HTTP/1.1 form (`ResponseCacheFill.responseData`);
/// an HTTP/2 hit reads `content` (the body without chunk framing).
struct CachedResponse {
    let head: HTTPRawResponseHead
    let body: ByteBuffer

    /// The body's content: `body` itself, or its chunks' data when chunked (trailers dropped).
    /// The bytes passed the relay's strict framer before they were stored.
    var content: ByteBuffer {
        guard head.framing.body == .chunked else { return body }
        var out = ByteBuffer()
        out.reserveCapacity(body.readableBytes)
        var input = body
        while let line = input.readableBytesView.firstIndex(of: UInt8(ascii: "\n")).flatMap({ input.readSlice(length: $0 - input.readerIndex + 1) }) {
            var size = 0
            for byte in line.readableBytesView {
                guard let digit = HTTPGrammar.hexValue(byte), size < Int.max >> 4 else { break }
                size = size << 4 | Int(digit)
            }
            guard size > 0, var data = input.readSlice(length: size) else { break }
            out.writeBuffer(&data)
            input.moveReaderIndex(forwardBy: min(2, input.readableBytes))  // the chunk's CRLF
        }
        return out
    }
}

/// The `result` of `sidecar_cache_requests_total{route,result}`.
enum CacheResult: String, CaseIterable {
    /// Answered from the cache (a 304 included).
    case hit
    /// Went upstream for a request the cache could have answered (the fetch that fills it, or
    /// a request that waited in vain or found too many waiting).
    case miss
    /// Waited for another request's fetch of the same key and was answered from its entry.
    case coalesced
    /// Not for the cache: `Cache-Control: no-store`/`no-cache` on the request, `Authorization`
    /// or a verified user without `allowAuthorization`, or a HEAD with no entry.
    case bypass
}

/// The fetch a leading request makes for the cache: it keeps the response head and a copy of
/// the body bytes as they are relayed (dropped once past the rule's bound), then stores them
/// or gives up, and wakes whoever waits for the key.
final class ResponseCacheFill {
    let cache: GatewayResponseCaches.RuleCache
    let caches: GatewayResponseCaches
    let key: String
    /// The request that fetched (its values of the response's `Vary` fields).
    let requestHeaders: HTTPRawHeaders
    private var head: HTTPRawResponseHead?
    private var body: ByteBuffer?
    private var size = 0

    init(cache: GatewayResponseCaches.RuleCache, caches: GatewayResponseCaches, key: String, requestHeaders: HTTPRawHeaders) {
        self.cache = cache
        self.caches = caches
        self.key = key
        self.requestHeaders = requestHeaders
    }

    func responseHead(_ head: HTTPRawResponseHead) {
        self.head = head
        size = head.byteCount + key.utf8.count
        body = ByteBuffer()
    }

    /// Body content without HTTP/1.1 framing (an HTTP/2 DATA frame), kept as a chunk when the
    /// head (made from HTTP/2 fields without `content-length`) says chunked.
    func responseData(_ bytes: ByteBuffer) {
        guard head?.framing.body == .chunked else { return responseBody(bytes) }
        guard bytes.readableBytes > 0 else { return }
        var chunk = ByteBuffer()
        chunk.reserveCapacity(bytes.readableBytes + 12)
        chunk.writeString(String(bytes.readableBytes, radix: 16))
        chunk.writeStaticString("\r\n")
        chunk.writeImmutableBuffer(bytes)
        chunk.writeStaticString("\r\n")
        responseBody(chunk)
    }

    /// The end of a body given by `responseData`: the last chunk when chunked.
    func responseDataEnded() {
        guard head?.framing.body == .chunked else { return }
        responseBody(ByteBuffer(string: "0\r\n\r\n"))
    }

    func responseBody(_ bytes: ByteBuffer) {
        guard body != nil else { return }
        size += bytes.readableBytes
        if size > cache.machine.limits.maxBytes {
            body = nil
        } else {
            body!.writeImmutableBuffer(bytes)
        }
    }

    /// The response ended whole: store it if it may be stored, then wake the waiters.
    func complete(now: NIODeadline) {
        defer { caches.wake(key, in: cache) }
        guard let head else {
            cache.machine.abandon(key: key)
            return
        }
        let headers = head.headers
        let response = GatewayResponseCaches.StateMachine.Response(
            status: head.status, cacheControl: CacheControl(headers.values(named: "cache-control")),
            vary: headers.values(named: "vary").flatMap { $0.split(separator: ",").map { $0.trimmingSpaces.lowercased() } },
            etag: headers.firstValue(named: "etag"),
            age: headers.firstValue(named: "age").map { CacheControl.seconds(Substring($0)) } ?? 0,
            setsCookie: headers.contains("set-cookie"))
        let requestHeaders = requestHeaders
        // A body dropped for size is weighed past the bound, so the machine refuses it as too large.
        _ = cache.machine.fill(
            key: key, response: response, payload: CachedResponse(head: head, body: body ?? ByteBuffer()),
            size: body == nil ? cache.machine.limits.maxBytes + 1 : size,
            header: { requestHeaders.firstValue(named: $0) }, now: now)
    }

    /// No whole response came (an error, a reset, a timeout): wake the waiters to go upstream.
    func abandon() {
        cache.machine.abandon(key: key)
        caches.wake(key, in: cache)
    }
}
