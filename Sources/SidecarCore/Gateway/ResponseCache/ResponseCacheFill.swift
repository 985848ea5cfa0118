import NIOCore

/// The fetch a leading request makes for the cache: it keeps the response head and a copy of
/// the body bytes as they are relayed (dropped once past the rule's bound), then stores them
/// or gives up, and wakes whoever waits for the key. A revalidation (`revalidating`: the stale
/// entry) that is answered 304 is not relayed: when the 304 selects the entry (RFC 9111
/// §4.3.4, `ResponseCacheStateMachine.selects`), the entry's head takes the 304's fields
/// (`CachedResponse.refreshed(by:)`), its freshness restarts from them, and the handler answers
/// the caller from it (`complete` returns it); when it does not (a different strong `ETag`, say),
/// the entry is dropped and the handler sends the caller's request again as a miss (`resend`,
/// with a new fill that ends the same fetch: the waiters wait on for it).
/// Confined to the fetching request's loop; only `RuleCache` calls take the store's lock.
/// A revalidation's `resend` holds the request (and so its exchange, which holds this fill)
/// until the exchange drops its fill, which every end does.
final class ResponseCacheFill {
    let cache: RuleCache
    let key: String
    /// The request that fetched (its values of the response's `Vary` fields).
    let requestHeaders: HTTPRawHeaders
    /// The stale entry a conditional request revalidates.
    let revalidating: CachedResponse?
    /// Sends the caller's request upstream again with `refetch()` as the exchange's fill (set by
    /// the handler that revalidates: it knows how to send it).
    var resend: (() -> Void)?
    private var head: HTTPRawResponseHead?
    private var body: ByteBuffer?
    private var size = 0

    /// What the handler does once the response ended (`complete`).
    enum Completion {
        /// Nothing more: the response was relayed (and stored when it may be).
        case relayed
        /// A revalidation's 304 refreshed the entry: answer the caller from it.
        case revalidated(CachedResponse)
        /// A revalidation's 304 did not select the entry, now dropped: call `resend`.
        case refetch
    }

    init(cache: RuleCache, key: String, requestHeaders: HTTPRawHeaders, revalidating: CachedResponse? = nil) {
        self.cache = cache
        self.key = key
        self.requestHeaders = requestHeaders
        self.revalidating = revalidating
    }

    /// The upstream said 304 to a revalidation: the caller is answered from the entry (at the
    /// response's end), not with this head.
    var isNotModified: Bool { revalidating != nil && head?.status == 304 }

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
        if size > cache.limits.maxBytes {
            body = nil
        } else {
            body!.writeImmutableBuffer(bytes)
        }
    }

    /// The response ended whole: store it if it may be stored (for a revalidation's 304 that
    /// selects the entry, the refreshed entry), then wake the waiters; or, for a 304 that does
    /// not select it, drop the entry and keep the fetch in flight for the request sent again.
    func complete(now: NIODeadline) -> Completion {
        guard let head else {
            abandon()
            return .relayed
        }
        let requestHeaders = requestHeaders
        let key = key
        let wallClock = AuthenticationFilter.wallClockSeconds()
        if let stale = revalidating, head.status == 304 {
            let notModified = GatewayResponseCaches.StateMachine.Validators(head)
            guard GatewayResponseCaches.StateMachine.selects(notModified, stored: .init(stale.head)) else {
                cache.count(.miss)
                cache.update { $0.dropForRefetch(key: key, header: { requestHeaders.firstValue(named: $0) }) }
                return .refetch
            }
            cache.count(.revalidated)
            let refreshed = stale.refreshed(by: head)
            let response = GatewayResponseCaches.StateMachine.Response(refreshed.head, wallClock: wallClock)
            _ = cache.finish(key) { machine in
                machine.fill(
                    key: key, response: response, payload: refreshed, size: refreshed.size(key: key),
                    header: { requestHeaders.firstValue(named: $0) }, now: now)
            }
            return .revalidated(refreshed)
        }
        if revalidating != nil { cache.count(.miss) }
        let response = GatewayResponseCaches.StateMachine.Response(head, wallClock: wallClock)
        // A body dropped for size is weighed past the bound, so the machine refuses it as too large.
        let payload = CachedResponse(head: head, body: body ?? ByteBuffer())
        let size = body == nil ? cache.limits.maxBytes + 1 : size
        _ = cache.finish(key) { machine in
            machine.fill(key: key, response: response, payload: payload, size: size, header: { requestHeaders.firstValue(named: $0) }, now: now)
        }
        return .relayed
    }

    /// The fill of the request sent again after a 304 that did not select the entry: the same
    /// key and fetch, no longer a revalidation (its answer is relayed, stored when it may be).
    func refetch() -> ResponseCacheFill {
        ResponseCacheFill(cache: cache, key: key, requestHeaders: requestHeaders)
    }

    /// No whole response came (an error, a reset, a timeout): wake the waiters to go upstream.
    func abandon() {
        if revalidating != nil { cache.count(.miss) }
        let key = key
        cache.finish(key) { $0.abandon(key: key) }
    }
}

extension ResponseCacheStateMachine.Validators {
    /// The `ETag` and `Last-Modified` of `head`.
    init(_ head: HTTPRawResponseHead) {
        self.init(etag: head.headers.firstValue(named: "etag"), lastModified: head.headers.firstValue(named: "last-modified"))
    }
}

extension ResponseCacheStateMachine.Response {
    /// What decides whether `head` may be stored, and for how long. `wallClock` (seconds since
    /// the epoch) stands in for a missing `Date` when `Expires` gives the freshness.
    init(_ head: HTTPRawResponseHead, wallClock: Int64) {
        let headers = head.headers
        self.init(
            status: head.status, cacheControl: CacheControl(headers.values(named: "cache-control")),
            vary: headers.values(named: "vary").flatMap { $0.split(separator: ",").map { $0.trimmingSpaces.lowercased() } },
            etag: headers.firstValue(named: "etag"),
            age: headers.firstValue(named: "age").map { CacheControl.seconds(Substring($0)) } ?? 0,
            setsCookie: headers.contains("set-cookie"),
            lastModified: headers.firstValue(named: "last-modified"),
            expires: Self.expires(headers, wallClock: wallClock))
    }

    /// `Expires` minus `Date` (or `wallClock` without a valid `Date`), in seconds; 0 for an
    /// invalid `Expires` (already expired, RFC 9111 §5.3); nil without one.
    private static func expires(_ headers: HTTPRawHeaders, wallClock: Int64) -> Int64? {
        guard let expires = headers.firstValue(named: "expires") else { return nil }
        guard let at = HTTPDate.seconds(expires, now: wallClock) else { return 0 }
        let date = headers.firstValue(named: "date").flatMap { HTTPDate.seconds($0, now: wallClock) } ?? wallClock
        return at - date
    }
}

extension CachedResponse {
    /// Fields a 304 never changes in a stored response: its framing (the stored body keeps
    /// its own), hop-by-hop ones, `Vary` (what the entry is chosen by) and `Set-Cookie` (a
    /// shared entry never keeps one).
    static let fieldsKeptOn304: Set<String> = [
        "content-length", "transfer-encoding", "trailer", "content-range", "connection", "keep-alive",
        "proxy-connection", "te", "upgrade", "vary", "set-cookie",
    ]

    /// This entry as a 304 revalidated it (RFC 9111 §3.2, §4.3.4): every field the 304 sends
    /// replaces the stored fields of that name (`Cache-Control`, `Expires`, `ETag`, `Date`,
    /// `Last-Modified`, …) but `fieldsKeptOn304`; a stored `Age` goes unless the 304 sends one
    /// (the refreshed entry is as old as the 304). The body stays. Unchanged if the merged head
    /// would not parse (over the parser's limits).
    func refreshed(by notModified: HTTPRawResponseHead) -> CachedResponse {
        let fields = notModified.headers
        var lines: [HTTPHeaderLine] = []
        for index in 0..<fields.count {
            let name = fields.name(at: index).lowercased()
            guard !Self.fieldsKeptOn304.contains(name), let line = try? HTTPHeaderLine(name: name, value: fields.value(at: index)) else {
                continue
            }
            lines.append(line)
        }
        let removed = lines.contains { $0.name == "age" } ? [] : ["age"]
        var bytes = ByteBuffer()
        HTTPHeadWriter(removing: removed, stripHopByHop: false).write(head, adding: lines, into: &bytes)
        var parser = HTTPHeadParser()
        guard let merged = try? parser.parseResponse(&bytes, requestMethod: .GET) else { return self }
        return CachedResponse(head: merged, body: body)
    }
}
