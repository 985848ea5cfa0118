import NIOCore

/// The decisions of one gateway rule's response cache (one per process, see
/// `GatewayResponseCaches`), without I/O: whether a request is answered from an entry (fresh,
/// its `Vary` values equal), waits for a fetch of the same key already in flight, fetches it
/// itself to fill the cache, revalidates an entry that has a validator (`ETag`,
/// `Last-Modified`) with a conditional request (the entry is stale or was stored `no-cache`, or
/// the request asks for a validated answer: `no-cache`, `max-age` exceeded, RFC 9111 §5.2.1),
/// or bypasses the cache (`no-store`, `Authorization`); and whether a fetched response is
/// stored, evicting least recently used entries to stay within `maxBytes`.
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
        /// Answer from the cache: the entry's payload, `age` in seconds, and whether the
        /// request's `If-None-Match` matched its `ETag` (answer 304).
        case hit(Payload, age: Int64, etag: String?, notModified: Bool)
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
        var mustRevalidate: Bool
        /// Lower-case names of the response's `Vary` and the request's values of them.
        var vary: [(name: String, value: String?)]
        var lastUsed: UInt64

        func isFresh(_ now: NIODeadline) -> Bool { !mustRevalidate && now < storedAt + freshFor }
        var hasValidator: Bool { etag != nil || lastModified != nil }
        /// Seconds, as the `age` the answer carries.
        func age(_ now: NIODeadline) -> Int64 { initialAge + (now - storedAt).nanoseconds / 1_000_000_000 }

        /// Whether `request` may have it without asking the upstream: fresh, and the request
        /// neither says `no-cache` nor `max-age` below its age (`max-age=0`: always validate).
        func serves(_ request: Request, now: NIODeadline) -> Bool {
            guard isFresh(now), !request.cacheControl.noCache else { return false }
            guard let maxAge = request.cacheControl.maxAge else { return true }
            return maxAge > 0 && age(now) <= maxAge
        }
    }

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
        if let reason = bypass(request) { return .bypass(reason) }
        if let entry = lookupEntry(request.key, header: header, now: now) {
            if entry.serves(request, now: now) || validatedSince.map({ entry.storedAt >= $0 }) == true {
                let notModified = request.ifNoneMatch.map { Self.matches($0, etag: entry.etag) } ?? false
                return .hit(entry.payload, age: entry.age(now), etag: entry.etag, notModified: notModified)
            }
            // To be validated first: one request goes upstream (conditionally when the entry has
            // a validator, else to replace it), the others wait for it.
            guard !request.isHead else { return .bypass(.headMiss) }
            if let other = startFetch(request.key, mayWait: mayWait, mayLead: mayLead) { return other }
            guard entry.hasValidator else { return .fetch }
            return .revalidate(entry.payload, etag: entry.etag, lastModified: entry.lastModified)
        }
        if request.isHead { return .bypass(.headMiss) }
        return startFetch(request.key, mayWait: mayWait, mayLead: mayLead) ?? .fetch
    }

    /// The variant of `key` that fits the request's `Vary` values (its use recorded for LRU),
    /// after dropping the key's stale variants that have no validator. Mutates in place: a hit
    /// copies nothing but the entry.
    private mutating func lookupEntry(_ key: String, header: (String) -> String?, now: NIODeadline) -> Entry? {
        guard let index = entries.index(forKey: key) else { return nil }
        if entries.values[index].contains(where: { !$0.isFresh(now) && !$0.hasValidator }) {
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
        guard let variant = entries.values[index].firstIndex(where: { $0.vary.allSatisfy { header($0.name) == $0.value } }) else {
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
        var freshFor = lifetime - .seconds(response.age)
        // Stale on arrival: kept only when it can be revalidated (each use revalidates it).
        if freshFor <= .zero {
            guard response.hasValidator else { return .failure(.stale) }
            freshFor = .zero
        }
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
            etag: response.etag, lastModified: response.lastModified, mustRevalidate: response.cacheControl.noCache,
            vary: vary, lastUsed: clock))
        entries[key] = variants
        storedBytes += size
        return .success(evicted)
    }

    /// The fetch of `key` ended without a response to store (an error, a reset, a timeout).
    mutating func abandon(key: String) {
        fetching[key] = nil
    }

    /// Why `request` may not use the cache at all; nil when it may. (`no-cache` and `max-age`
    /// on a request still use it: they ask for a validated answer, see `lookup`.)
    func bypass(_ request: Request) -> Bypass? {
        if request.cacheControl.noStore { return .requestDirective }
        if request.hasAuthorization && !limits.allowAuthorization { return .authorization }
        return nil
    }

    /// Whether `request` would be answered from a fresh entry now without asking the upstream,
    /// changing nothing (`/explain`).
    func wouldHit(_ request: Request, header: (String) -> String?, now: NIODeadline) -> Bool {
        guard bypass(request) == nil, let variants = entries[request.key] else { return false }
        return variants.contains { entry in entry.serves(request, now: now) && entry.vary.allSatisfy { header($0.name) == $0.value } }
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
