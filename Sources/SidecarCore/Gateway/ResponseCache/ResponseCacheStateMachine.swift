import NIOCore

/// The decisions of one gateway rule's response cache (one per process, see
/// `GatewayResponseCaches`), without I/O: whether a request is answered from an entry (fresh,
/// its `Vary` values equal), waits for a fetch of the same key already in flight, fetches it
/// itself to fill the cache, revalidates an entry that has a validator (`ETag`,
/// `Last-Modified`) with a conditional request (the entry is stale or was stored `no-cache`, or
/// the request asks for a validated answer: `no-cache`, `max-age` exceeded, `min-fresh` not
/// met, RFC 9111 §5.2.1), is answered stale (the request's `max-stale` allows it and the
/// response did not forbid it), is refused (`only-if-cached` without an entry it may have),
/// or bypasses the cache (`no-store`, `Authorization`); whether a fetched response is stored,
/// evicting least recently used entries to stay within `maxBytes`; and whether a 304 selects
/// the entry it revalidated (RFC 9111 §4.3.4).
///
/// Invariants: `storedBytes <= limits.maxBytes`; at most one fetch per key is in flight, and
/// at most `limits.maxWaiters` requests wait for it. Time is passed in (`now`), so tests drive
/// a manual clock. `Payload` is what the handler replays (head and body bytes); the machine
/// only weighs it by the `size` it is given.
struct ResponseCacheStateMachine<Payload> {
    struct Limits {
        /// Freshness when the response says nothing, and the most a `max-age` gets.
        var ttl: TimeAmount
        var maxBytes: Int
        /// Requests waiting for one key's fetch; more go upstream on their own.
        var maxWaiters = 1024
        /// Responses (`Vary` variants) kept per key.
        var maxVariants = 8
        /// Requests with `Authorization` may use the cache (the rule's `allowAuthorization`).
        var allowAuthorization = false
    }

    /// What the request asks of the cache, read from its head.
    struct Request: Sendable {
        var key: String
        var isHead: Bool
        var hasAuthorization: Bool
        var cacheControl: CacheControl
        var ifNoneMatch: String?
    }

    /// What decides whether a response may be stored, read from its head.
    struct Response: Sendable {
        var status: Int
        var cacheControl: CacheControl
        var vary: [String]
        var etag: String?
        /// The `age` it came with (seconds), counted into the entry's age.
        var age: Int64
        var setsCookie: Bool
        /// Its `Last-Modified`, kept as the validator for `If-Modified-Since`.
        var lastModified: String? = nil
        /// Its freshness by `Expires` (RFC 9111 §4.2.1): `Expires` minus `Date` in seconds, 0 or
        /// less when already expired (or malformed); used only without `max-age`/`s-maxage`.
        var expires: Int64? = nil

        var hasValidator: Bool { etag != nil || lastModified != nil }
    }

    enum Lookup {
        /// Answer from the cache: the entry's payload, `age` in seconds, whether the request's
        /// `If-None-Match` matched its `ETag` (answer 304), and whether it is stale (served
        /// unvalidated because the request's `max-stale` allows it).
        case hit(Payload, age: Int64, etag: String?, notModified: Bool, stale: Bool)
        /// Go upstream and hand the response to `fill` (or `abandon` when there is none): no
        /// entry fits, or the request asks for a validated answer and the entry has no validator.
        case fetch
        /// The matching entry may not be used unvalidated (stale, stored `no-cache`, or the
        /// request's `no-cache` / `max-age`): go upstream with its validators (`If-None-Match`,
        /// `If-Modified-Since`); a 304 refreshes it (`fill` with the refreshed payload), a 200
        /// replaces it, anything else is handed to `fill` or `abandon` as for `fetch`.
        case revalidate(Payload, etag: String?, lastModified: String?)
        /// A fetch of this key is in flight: wait for it, then look up again.
        case wait
        /// `only-if-cached` and no entry the request may have: answer 504, never go upstream
        /// (nor wait for a fetch, nor start one).
        case notCached
        /// Go upstream; nothing is stored.
        case bypass(Bypass)
    }

    enum Bypass: Equatable {
        /// `Cache-Control: no-store` on the request: neither answered from nor stored.
        case requestDirective
        /// `Authorization` on a rule without `allowAuthorization`.
        case authorization
        /// A HEAD the cache has no fresh GET answer for (a HEAD response has no body to keep).
        case headMiss
        /// Too many already wait for this key's fetch.
        case waitersFull
        /// Looked up again after a wait, and still no entry that fits (a `Vary` variant, or a
        /// response that was not stored).
        case afterWait
    }

    enum NotStored: Error, Equatable, Sendable {
        case status, noStore, isPrivate, noCache, varyStar, setCookie, stale, tooLarge
    }

    private struct Entry {
        var payload: Payload
        var size: Int
        var storedAt: NIODeadline
        var initialAge: Int64
        var freshFor: TimeAmount
        var etag: String?
        var lastModified: String?
        /// `no-cache`: every use needs a revalidation first.
        var noCache: Bool
        /// Never used stale, whatever a request's `max-stale` allows: `must-revalidate`,
        /// `proxy-revalidate`, `no-cache`, or `s-maxage` (which implies `proxy-revalidate` for a
        /// shared cache, RFC 9111 §5.2.2.10).
        var neverStale: Bool
        /// Lower-case names of the response's `Vary` and the request's values of them.
        var vary: [(name: String, value: String?)]
        var lastUsed: UInt64

        func isFresh(_ now: NIODeadline) -> Bool { !noCache && now < storedAt + freshFor }
        var hasValidator: Bool { etag != nil || lastModified != nil }
        /// Whether the request whose fields `header` reads is this variant (its `Vary` values).
        func fits(_ header: (String) -> String?) -> Bool { vary.allSatisfy { header($0.name) == $0.value } }
        /// Seconds, as the `age` the answer carries.
        func age(_ now: NIODeadline) -> Int64 { initialAge + (now - storedAt).nanoseconds / 1_000_000_000 }

        /// How `request` may have it without asking the upstream (nil: only validated): the
        /// request says neither `no-cache` nor a `max-age` below its age (`max-age=0`: always
        /// validate); then `.fresh` when it stays fresh for the request's `min-fresh` more
        /// seconds, or `.stale` when it is stale by no more than the request's `max-stale`
        /// allows and may be served stale (RFC 9111 §4.2.4, §5.2.1).
        func use(for request: Request, now: NIODeadline) -> Use? {
            let asked = request.cacheControl
            guard !noCache, !asked.noCache else { return nil }
            if let maxAge = asked.maxAge, !(maxAge > 0 && age(now) <= maxAge) { return nil }
            let left = freshFor - (now - storedAt)
            if left > .zero {
                guard let minFresh = asked.minFresh else { return .fresh }
                return left >= .seconds(minFresh) ? .fresh : nil
            }
            guard let maxStale = asked.maxStale, !neverStale else { return nil }
            return maxStale == .max || .zero - left <= .seconds(maxStale) ? .stale : nil
        }
    }

    enum Use { case fresh, stale }

    let limits: Limits
    private var entries: [String: [Entry]] = [:]
    /// Keys with a fetch in flight, and how many requests wait for each.
    private var fetching: [String: Int] = [:]
    private(set) var storedBytes = 0
    private var clock: UInt64 = 0

    init(limits: Limits) {
        self.limits = limits
    }

    var entryCount: Int { entries.values.reduce(0) { $0 + $1.count } }

    /// Decides what happens to `request`; `header` reads the request's fields (for `Vary`).
    /// After a wait, pass `mayWait: false, mayLead: false` and when the wait began
    /// (`validatedSince`): an entry that fits and was stored or revalidated since is served
    /// (even one that needs revalidation for every use, or to a request that asked for a
    /// validated answer: it was validated after the request came), anything else goes upstream alone.
    mutating func lookup(
        _ request: Request, header: (String) -> String?, now: NIODeadline, mayWait: Bool = true, mayLead: Bool = true,
        validatedSince: NIODeadline? = nil
    ) -> Lookup {
        let onlyIfCached = request.cacheControl.onlyIfCached
        if let reason = bypass(request) { return onlyIfCached ? .notCached : .bypass(reason) }
        // A request that takes stale answers keeps stale entries without a validator for it.
        if let entry = lookupEntry(request.key, header: header, now: now, keepStale: request.cacheControl.maxStale != nil) {
            let validated = validatedSince.map { entry.storedAt >= $0 } == true
            if let use = validated ? .fresh : entry.use(for: request, now: now) {
                let notModified = request.ifNoneMatch.map { Self.matches($0, etag: entry.etag) } ?? false
                return .hit(entry.payload, age: entry.age(now), etag: entry.etag, notModified: notModified, stale: use == .stale)
            }
            if onlyIfCached { return .notCached }
            // To be validated first: one request goes upstream (conditionally when the entry has
            // a validator, else to replace it), the others wait for it.
            guard !request.isHead else { return .bypass(.headMiss) }
            if let other = startFetch(request.key, mayWait: mayWait, mayLead: mayLead) { return other }
            guard entry.hasValidator else { return .fetch }
            return .revalidate(entry.payload, etag: entry.etag, lastModified: entry.lastModified)
        }
        if onlyIfCached { return .notCached }
        if request.isHead { return .bypass(.headMiss) }
        return startFetch(request.key, mayWait: mayWait, mayLead: mayLead) ?? .fetch
    }

    /// The variant of `key` that fits the request's `Vary` values (its use recorded for LRU),
    /// after dropping the key's stale variants that have no validator (unless `keepStale`).
    /// Mutates in place: a hit copies nothing but the entry.
    private mutating func lookupEntry(_ key: String, header: (String) -> String?, now: NIODeadline, keepStale: Bool) -> Entry? {
        guard let index = entries.index(forKey: key) else { return nil }
        if !keepStale, entries.values[index].contains(where: { !$0.isFresh(now) && !$0.hasValidator }) {
            var dropped = 0
            entries.values[index].removeAll { entry in
                guard !entry.isFresh(now) && !entry.hasValidator else { return false }
                dropped += entry.size
                return true
            }
            storedBytes -= dropped
            if entries.values[index].isEmpty {
                entries.remove(at: index)
                return nil
            }
        }
        guard let variant = entries.values[index].firstIndex(where: { $0.fits(header) }) else {
            return nil
        }
        clock &+= 1
        entries.values[index][variant].lastUsed = clock
        return entries.values[index][variant]
    }

    /// A miss (or a revalidation) of `key`: wait for the fetch in flight, or bypass; nil when
    /// this request leads the fetch (now recorded as in flight).
    private mutating func startFetch(_ key: String, mayWait: Bool, mayLead: Bool) -> Lookup? {
        if let waiting = fetching[key] {
            guard mayWait else { return .bypass(.afterWait) }
            guard waiting < limits.maxWaiters else { return .bypass(.waitersFull) }
            fetching[key] = waiting + 1
            return .wait
        }
        guard mayLead else { return .bypass(.afterWait) }
        fetching[key] = 0
        return nil
    }

    /// The fetch of `key` ended with `response` (the payload weighing `size` bytes); `header`
    /// reads the request that fetched it (its `Vary` values). Ends the fetch whatever the result.
    mutating func fill(
        key: String, response: Response, payload: Payload, size: Int, header: (String) -> String?, now: NIODeadline
    ) -> Result<Int, NotStored> {
        fetching[key] = nil
        if let reason = Self.refusal(response) { return .failure(reason) }
        var lifetime = limits.ttl
        if let seconds = response.cacheControl.sharedMaxAge ?? response.cacheControl.maxAge ?? response.expires {
            lifetime = min(lifetime, .seconds(max(0, seconds)))
        }
        // Negative when stale on arrival (by as much: a request's `max-stale` weighs it).
        let freshFor = lifetime - .seconds(response.age)
        // Stale on arrival: kept only when it can be revalidated (each use revalidates it).
        if freshFor <= .zero, !response.hasValidator { return .failure(.stale) }
        guard size <= limits.maxBytes else { return .failure(.tooLarge) }
        let vary = response.vary.map { (name: $0, value: header($0)) }
        var variants = entries[key] ?? []
        if let same = variants.firstIndex(where: { old in
            old.vary.count == vary.count && zip(old.vary, vary).allSatisfy { $0.name == $1.name && $0.value == $1.value }
        }) {
            storedBytes -= variants[same].size
            variants.remove(at: same)
        }
        if variants.count >= limits.maxVariants, let oldest = variants.indices.min(by: { variants[$0].lastUsed < variants[$1].lastUsed }) {
            storedBytes -= variants[oldest].size
            variants.remove(at: oldest)
        }
        entries[key] = variants.isEmpty ? nil : variants
        var evicted = 0
        while storedBytes + size > limits.maxBytes, evictLeastRecentlyUsed() { evicted += 1 }
        clock &+= 1
        variants = entries[key] ?? []
        variants.append(Entry(
            payload: payload, size: size, storedAt: now, initialAge: response.age, freshFor: freshFor,
            etag: response.etag, lastModified: response.lastModified, noCache: response.cacheControl.noCache,
            neverStale: response.cacheControl.mustRevalidate || response.cacheControl.noCache || response.cacheControl.sharedMaxAge != nil,
            vary: vary, lastUsed: clock))
        entries[key] = variants
        storedBytes += size
        return .success(evicted)
    }

    /// The fetch of `key` ended without a response to store (an error, a reset, a timeout).
    mutating func abandon(key: String) {
        fetching[key] = nil
    }

    /// A revalidation of `key` was answered by a 304 that does not select the entry (see
    /// `selects`): the variant that fits the request (`header`: its `Vary` values) is dropped
    /// and the fetch stays in flight, so the same request fetches again without the entry's
    /// conditions and the requests waiting for the key wait on for that answer.
    mutating func dropForRefetch(key: String, header: (String) -> String?) {
        guard let index = entries.index(forKey: key),
            let variant = entries.values[index].firstIndex(where: { $0.fits(header) })
        else { return }
        storedBytes -= entries.values[index][variant].size
        entries.values[index].remove(at: variant)
        if entries.values[index].isEmpty { entries.remove(at: index) }
    }

    /// A response's validators, as a 304 and a stored response carry them.
    struct Validators: Equatable, Sendable {
        var etag: String?
        var lastModified: String?
    }

    /// RFC 9111 §4.3.4: whether a 304 selects the stored response it revalidated, so that its
    /// fields may update it. An `ETag` both carry decides: a strong one in the 304 selects only
    /// a stored response with the same strong tag (strong comparison, RFC 9110 §8.8.3.2), a
    /// weak one any with the same tag (weak comparison). Otherwise a `Last-Modified` the 304
    /// carries must equal the stored one (used as the strong validator it is when the stored
    /// response has no `ETag`); a 304 with an `ETag` or `Last-Modified` the stored response
    /// lacks selects nothing. A 304 with no validator selects the one response revalidated.
    static func selects(_ notModified: Validators, stored: Validators) -> Bool {
        if let sent = notModified.etag?.trimmingSpaces, let kept = stored.etag?.trimmingSpaces {
            let isWeak: (Substring) -> Bool = { $0.hasPrefix("W/") }
            if isWeak(sent) { return sent.dropFirst(2) == (isWeak(kept) ? kept.dropFirst(2) : kept) }
            return !isWeak(kept) && sent == kept
        }
        if let sent = notModified.lastModified { return stored.lastModified == sent }
        return notModified.etag == nil
    }

    /// Why `request` may not use the cache at all; nil when it may. (`no-cache` and `max-age`
    /// on a request still use it: they ask for a validated answer, see `lookup`.)
    func bypass(_ request: Request) -> Bypass? {
        if request.cacheControl.noStore { return .requestDirective }
        if request.hasAuthorization && !limits.allowAuthorization { return .authorization }
        return nil
    }

    /// Whether `request` would be answered from an entry now without asking the upstream
    /// (fresh, or stale within its `max-stale`), changing nothing (`/explain`).
    func wouldHit(_ request: Request, header: (String) -> String?, now: NIODeadline) -> Bool {
        guard bypass(request) == nil, let variants = entries[request.key] else { return false }
        return variants.contains { entry in entry.use(for: request, now: now) != nil && entry.fits(header) }
    }

    /// `key`'s entries (`Vary` variants) and how many are fresh, changing nothing (`/explain`).
    func peek(_ key: String, now: NIODeadline) -> (variants: Int, fresh: Int) {
        let variants = entries[key] ?? []
        return (variants.count, variants.filter { $0.isFresh(now) }.count)
    }

    /// Whether a fetch (or revalidation) of `key` is in flight.
    func isFetching(_ key: String) -> Bool { fetching[key] != nil }

    /// Why `response` may not be stored by a shared cache, nil when it may.
    static func refusal(_ response: Response) -> NotStored? {
        if response.status != 200 { return .status }
        if response.cacheControl.noStore { return .noStore }
        if response.cacheControl.isPrivate { return .isPrivate }
        // no-cache: every use needs a revalidation, which needs a validator.
        if response.cacheControl.noCache && !response.hasValidator { return .noCache }
        if response.vary.contains("*") { return .varyStar }
        if response.setsCookie { return .setCookie }
        return nil
    }

    /// Drops the entry used longest ago (a scan: it runs only when a fill needs room, on the
    /// miss path). False when there is nothing to drop.
    private mutating func evictLeastRecentlyUsed() -> Bool {
        var oldest: (key: String, index: Int, used: UInt64)?
        for (key, variants) in entries {
            for (index, entry) in variants.enumerated() where entry.lastUsed < (oldest?.used ?? .max) {
                oldest = (key, index, entry.lastUsed)
            }
        }
        guard let oldest, var variants = entries[oldest.key] else { return false }
        storedBytes -= variants[oldest.index].size
        variants.remove(at: oldest.index)
        entries[oldest.key] = variants.isEmpty ? nil : variants
        return true
    }

    /// `If-None-Match` against the entry's `ETag`: `*`, or any listed tag equal by the weak
    /// comparison (RFC 9110 §13.1.2: `W/` ignored).
    static func matches(_ ifNoneMatch: String, etag: String?) -> Bool {
        guard let etag else { return false }
        if ifNoneMatch.trimmingSpaces == "*" { return true }
        let weak: (Substring) -> Substring = { $0.hasPrefix("W/") ? $0.dropFirst(2) : $0 }
        let target = weak(etag.trimmingSpaces)
        return ifNoneMatch.split(separator: ",").contains { weak($0.trimmingSpaces) == target }
    }
}

extension ResponseCacheStateMachine.Lookup: Sendable where Payload: Sendable {}
