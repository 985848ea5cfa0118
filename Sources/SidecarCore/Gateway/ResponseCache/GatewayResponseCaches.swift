import NIOCore
import Synchronization

/// The gateway's response caches: one store (`RuleCache`) per gateway rule with `cache:`,
/// shared by every event loop of the process, as nginx's shared-memory zone with its lock. So
/// concurrent misses for one key reach the upstream once whichever loops their connections are
/// on, and a rule's `maxBytes` bounds the whole process (least recently used over all loops).
///
/// Threading: a store's `Mutex` is held only for one state-machine decision (lookup, fill,
/// abandon) or a change to its waiter list; stored bodies are immutable `ByteBuffer`s that
/// every loop reads without it. A waiter is resumed on its own loop (`EventLoop.execute`), and
/// its wait times out on that loop. The stores are found through a loop's `LoopResponseCaches`
/// (this registry's lock is taken on a loop's first use of a rule only).
final class GatewayResponseCaches: Sendable {
    /// How long a request waits for another's fetch of the same key before going upstream
    /// itself (as nginx's `proxy_cache_lock_timeout`).
    static let waitTimeout = TimeAmount.seconds(5)

    typealias StateMachine = ResponseCacheStateMachine<CachedResponse>

    struct RuleID: Hashable, Sendable {
        let route: String
        let index: Int
    }

    private let rules = Mutex<[RuleID: RuleCache]>([:])

    init() {}

    /// The store of rule `id` under `policy` if a request made it (`/explain` makes none).
    func existing(_ id: RuleID, policy: GatewayCachePolicy) -> RuleCache? {
        rules.withLock { rules in rules[id].flatMap { $0.policy == policy ? $0 : nil } }
    }

    /// The store of rule `id`; a rule whose policy changed starts empty (fetches in flight
    /// finish into the store they started from).
    func cache(for id: RuleID, policy: GatewayCachePolicy, metrics: SidecarMetrics) -> RuleCache {
        rules.withLock { rules in
            if let cache = rules[id], cache.policy == policy { return cache }
            var counters: [CacheResult: Counter] = [:]
            for result in CacheResult.allCases { counters[result] = metrics.cacheRequests(route: id.route, result: result) }
            let cache = RuleCache(policy: policy, counters: counters)
            rules[id] = cache
            return cache
        }
    }
}

/// One loop's way to the shared stores: the rules it has used, found again without a lock.
/// Confined to its loop (part of `LoopContext`).
final class LoopResponseCaches {
    let shared: GatewayResponseCaches
    private let metrics: SidecarMetrics
    private var rules: [GatewayResponseCaches.RuleID: RuleCache] = [:]

    init(shared: GatewayResponseCaches, metrics: SidecarMetrics) {
        self.shared = shared
        self.metrics = metrics
    }

    func cache(for match: GatewayTable.Match, policy: GatewayCachePolicy) -> RuleCache {
        let id = GatewayResponseCaches.RuleID(route: match.route.name, index: match.ruleIndex)
        if let cache = rules[id], cache.policy == policy { return cache }
        let cache = shared.cache(for: id, policy: policy, metrics: metrics)
        rules[id] = cache
        return cache
    }
}

/// The cache of one gateway rule, for the whole process: its decisions, who waits for which
/// key (each on its own loop), its metric series.
final class RuleCache: Sendable {
    typealias StateMachine = GatewayResponseCaches.StateMachine

    let policy: GatewayCachePolicy
    let limits: StateMachine.Limits
    private let counters: [CacheResult: Counter]
    private let state: Mutex<State>

    private struct State {
        var machine: StateMachine
        var waiters: [String: [Waiter]] = [:]
    }

    /// A parked request as the store keeps it: resumed by a task on `eventLoop`.
    private struct Waiter: Sendable {
        let id: ObjectIdentifier
        let eventLoop: EventLoop
        let waiter: NIOLoopBound<CacheWaiter>
    }

    init(policy: GatewayCachePolicy, counters: [CacheResult: Counter]) {
        self.policy = policy
        self.limits = StateMachine.Limits(
            ttl: policy.ttl.timeAmount, maxBytes: max(1, policy.maxBytes), allowAuthorization: policy.allowAuthorization)
        self.counters = counters
        self.state = Mutex(State(machine: StateMachine(limits: limits)))
    }

    func count(_ result: CacheResult) { counters[result]?.increment() }

    /// The machine's decision for `request` (see `ResponseCacheStateMachine.lookup`): the hit
    /// path's one lock.
    func lookup(
        _ request: StateMachine.Request, header: @Sendable (String) -> String?, now: NIODeadline, afterWaitSince: NIODeadline?
    ) -> StateMachine.Lookup {
        let waited = afterWaitSince != nil
        return state.withLock { state in
            state.machine.lookup(request, header: header, now: now, mayWait: !waited, mayLead: !waited, validatedSince: afterWaitSince)
        }
    }

    /// The fetch of `key` ended: `decide` fills the machine (or abandons the fetch); the
    /// waiters are taken in the same lock, so none registers after they were woken, and each
    /// is resumed on its own loop (`resume(true)`: look up again).
    func finish<Outcome: Sendable>(_ key: String, _ decide: @Sendable (inout StateMachine) -> Outcome) -> Outcome {
        let (result, waiting) = state.withLock { state in
            (decide(&state.machine), state.waiters.removeValue(forKey: key) ?? [])
        }
        for entry in waiting {
            let waiter = entry.waiter
            entry.eventLoop.execute {
                waiter.value.timer?.cancel()
                waiter.value.fire(true)
            }
        }
        return result
    }

    /// A change to the machine that ends no fetch (so wakes no waiter): `dropForRefetch`.
    func update(_ change: (inout StateMachine) -> Void) {
        state.withLock { change(&$0.machine) }
    }

    /// Parks a request (the machine said `.wait`) until the fetch of `key` ends (`resume(true)`:
    /// look up again) or the wait times out on `eventLoop` (`resume(false)`: go upstream). A
    /// fetch that ended between the lookup and this call resumes it at once.
    func wait(for key: String, on eventLoop: EventLoop, resume: @escaping (Bool) -> Void) {
        let waiter = CacheWaiter(resume: resume)
        let entry = Waiter(id: ObjectIdentifier(waiter), eventLoop: eventLoop, waiter: NIOLoopBound(waiter, eventLoop: eventLoop))
        let parked = state.withLock { state in
            guard state.machine.isFetching(key) else { return false }
            state.waiters[key, default: []].append(entry)
            return true
        }
        guard parked else {
            eventLoop.assumeIsolated().execute { waiter.fire(true) }
            return
        }
        waiter.timer = eventLoop.assumeIsolated().scheduleTask(in: GatewayResponseCaches.waitTimeout) { [self] in
            let removed = self.state.withLock { state -> Bool in
                guard let index = state.waiters[key]?.firstIndex(where: { $0.id == entry.id }) else { return false }
                state.waiters[key]!.remove(at: index)
                if state.waiters[key]!.isEmpty { state.waiters[key] = nil }
                return true
            }
            if removed { waiter.fire(false) }  // else a wake is on its way
        }
    }

    /// `/explain`: whether `request` would be a hit now (see `ResponseCacheStateMachine.wouldHit`).
    func wouldHit(_ request: StateMachine.Request, header: @Sendable (String) -> String?, now: NIODeadline) -> Bool {
        state.withLock { $0.machine.wouldHit(request, header: header, now: now) }
    }

    /// `/explain`: the bytes and entries stored, and `key`'s entries (every `Vary` variant)
    /// and how many of them are fresh; changes nothing (no use recorded).
    func summary(key: String, now: NIODeadline) -> (storedBytes: Int, entries: Int, variants: Int, fresh: Int) {
        state.withLock { state in
            let (variants, fresh) = state.machine.peek(key, now: now)
            return (state.machine.storedBytes, state.machine.entryCount, variants, fresh)
        }
    }
}

/// A request parked on a fetch in flight; fires once. Confined to the parked request's loop.
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
struct CachedResponse: Sendable {
    let head: HTTPRawResponseHead
    let body: ByteBuffer

    /// What the entry weighs against `maxBytes`: head, key and body bytes.
    func size(key: String) -> Int { head.byteCount + key.utf8.count + body.readableBytes }

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
    /// Answered from the cache (a 304 included, and a stale entry a request's `max-stale` took).
    case hit
    /// No entry the request could have: it went upstream (the fetch that fills it, a request
    /// that waited in vain or found too many waiting, a revalidation answered 200 or by a 304
    /// that did not select the entry), or, asking `only-if-cached`, was answered 504.
    case miss
    /// Waited for another request's fetch of the same key and was answered from its entry.
    case coalesced
    /// Not for the cache: `Cache-Control: no-store` on the request, `Authorization` or a
    /// verified user without `allowAuthorization`, or a HEAD with no entry it may have unvalidated.
    case bypass
    /// An entry revalidated upstream (stale, stored `no-cache`, or the request asked for a
    /// validated answer): the 304 refreshed it and the caller got its stored body with the
    /// 304's fields (`x-mesh-cache: revalidated`). A revalidation answered 200 counts as a miss.
    case revalidated
}
