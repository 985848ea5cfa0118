import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// Whole outbound exchanges in memory: the proxy handler, its loop state and pool, and the
/// upstreams on embedded channels. Timers run on the embedded loop's clock, so timeouts,
/// backoff, pool waits and fault delays are asserted by advancing time, never by sleeping.
@Suite struct ExchangePipelineTests {
    typealias H = ExchangeHarness
    static let noBackoff = RetryBackoff(base: .zero, max: .zero)

    @Test func aRequestIsRelayedAndItsResponseComesBack() throws {
        let h = try H(rules: [RouteRule()])
        try h.send(H.get("/pay/1"))
        #expect(h.upstreams.connections.count == 1)
        let sent = try h.upstreams.received(0)
        #expect(sent.hasPrefix("GET /pay/1 HTTP/1.1\r\nHost: payments\r\n"))
        #expect(sent.contains("x-mesh-hops: 1\r\n"))
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer() == "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    }

    @Test func aPooledConnectionClosesOnlyAfterTheIdleTimeoutSinceItsLastRelease() throws {
        let h = try H(rules: [RouteRule()])
        h.context.pool.idleTimeout = .seconds(10)
        try h.send(H.get())
        try h.upstreams.respond(0, H.ok)
        h.loop.advanceTime(by: .seconds(8))
        try h.send(H.get())
        #expect(h.upstreams.connections.count == 1, "the idle connection is reused")
        try h.upstreams.respond(0, H.ok)
        h.loop.advanceTime(by: .seconds(9))  // 17 s: 10 s after the first release, 9 s after the second
        #expect(h.upstreams.connections[0].channel.isActive, "reused since: not idle for 10 s yet")
        h.loop.advanceTime(by: .seconds(1))
        #expect(!h.upstreams.connections[0].channel.isActive, "idle 10 s since its last release: closed")
        try h.send(H.get())
        #expect(h.upstreams.connections.count == 2, "the next request opens a new connection")
    }

    /// A burst's connections all stay pooled (they are within the destination's
    /// `maxConnections`): the next burst of the same size opens none. A fixed cap of 64 idle
    /// connections closed the rest, and every burst reopened them, a TLS handshake each.
    @Test func aBurstsConnectionsAreAllKeptForTheNextBurst() throws {
        let h = try H(rules: [RouteRule()], endpoints: [H.first])
        let callers = try (0..<100).map { _ in try h.anotherDownstream() }
        for caller in callers { try h.send(H.get(), on: caller) }
        #expect(h.upstreams.connections.count == 100)
        for index in 0..<100 { try h.upstreams.respond(index, H.ok) }
        h.loop.run()
        #expect(h.upstreams.connections.allSatisfy { $0.channel.isActive }, "all 100 are kept idle")
        for caller in callers { try h.send(H.get(), on: caller) }
        #expect(h.upstreams.connections.count == 100, "the second burst reuses them all")
        #expect(try callers.allSatisfy { try h.answer(on: $0).hasPrefix("HTTP/1.1 200 OK\r\n") })
    }

    @Test func theUpstreamGetsTheCallersTraceWithThisHopsSpan() throws {
        let h = try H(rules: [RouteRule()])
        try h.send("GET /pay HTTP/1.1\r\nHost: payments\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
        let sent = try h.upstreams.received(0)
        let line = try #require(sent.split(separator: "\r\n").first { $0.hasPrefix("traceparent: ") })
        #expect(line.hasPrefix("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"))
        #expect(!line.contains("00f067aa0ba902b7"), "a new span id for this hop: \(line)")
        #expect(sent.components(separatedBy: "traceparent").count == 2, "one traceparent goes upstream")
    }

    @Test func theRouteTimeoutAnswers504() throws {
        let h = try H(rules: [RouteRule(timeout: .seconds(1), retries: RetryPolicy(attempts: 1))])
        try h.send(H.get())
        h.loop.advanceTime(by: .milliseconds(999))
        #expect(try h.answer().isEmpty)
        h.loop.advanceTime(by: .milliseconds(1))
        let answer = try h.answer()
        #expect(answer.hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"), "\(answer)")
        #expect(answer.contains("x-mesh-error: timeout"))
    }

    @Test func thePerTryTimeoutRetriesOnTheOtherEndpoint() throws {
        let retries = RetryPolicy(attempts: 2, perTryTimeout: .milliseconds(200), backoff: Self.noBackoff)
        let h = try H(rules: [RouteRule(retries: retries)])
        try h.send(H.get())
        #expect(h.upstreams.connections.count == 1)
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(h.upstreams.connections.count == 2, "the slow try is abandoned and a second starts")
        #expect(h.upstreams.connections[0].address != h.upstreams.connections[1].address)
        #expect(try h.upstreams.received(1).hasPrefix("GET /pay HTTP/1.1\r\n"))
        try h.upstreams.respond(1, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(h.metrics.retries(peer: "payments", reason: "per-try-timeout").value == 1)
    }

    @Test func aRetryWaitsForItsBackoff() throws {
        let backoff = RetryBackoff(base: .milliseconds(100), max: .milliseconds(100))
        let h = try H(rules: [RouteRule(retries: RetryPolicy(attempts: 2, retryOn: [.status(503)], backoff: backoff))])
        try h.send(H.get())
        try h.upstreams.respond(0, H.unavailable)
        #expect(try h.answer().isEmpty, "the 503 is not relayed while a retry is due")
        h.loop.advanceTime(by: .milliseconds(100))
        #expect(h.upstreams.connections.count == 2, "retried within the backoff ceiling")
        try h.upstreams.respond(1, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test func anExhaustedRetryBudgetRelaysTheFailure() throws {
        var policy = TrafficPolicy.default(service: "payments")
        policy.retryBudget = RetryBudget(percent: 0, minPerSecond: 0)
        let h = try H(rules: [RouteRule(retries: RetryPolicy(attempts: 3, retryOn: [.status(503)]))], policy: policy)
        try h.send(H.get())
        try h.upstreams.respond(0, H.unavailable)
        #expect(try h.answer().hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        h.loop.advanceTime(by: .seconds(1))
        #expect(h.upstreams.connections.count == 1)
        #expect(h.metrics.peer("payments").retryBudgetExhausted.value == 1)
    }

    @Test func theBreakersRequestLimitRefusesAtOnce() throws {
        var policy = TrafficPolicy.default(service: "payments")
        policy.circuitBreaker.maxRequests = 1
        let h = try H(rules: [RouteRule()], policy: policy, endpoints: [H.first])
        try h.send(H.get())
        let other = try h.anotherDownstream()
        try h.send(H.get(), on: other)
        let refused = try h.answer(on: other)
        #expect(refused.hasPrefix("HTTP/1.1 503 "), "\(refused)")
        #expect(refused.contains("x-mesh-error: circuit-open"))
        #expect(h.metrics.peer("payments").circuitBreakerRejections.value == 1)
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))
        try h.send(H.get(), on: other)
        #expect(h.upstreams.connections.count == 1, "the slot came free and the connection is reused")
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer(on: other).hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test func atMaxConnectionsRequestsQueueThenAreRefused() throws {
        var policy = TrafficPolicy.default(service: "payments")
        policy.circuitBreaker.maxConnections = 1
        policy.circuitBreaker.maxPendingRequests = 1
        let h = try H(rules: [RouteRule()], policy: policy, endpoints: [H.first])
        try h.send(H.get("/a"))
        let waiting = try h.anotherDownstream(), refused = try h.anotherDownstream()
        try h.send(H.get("/b"), on: waiting)
        #expect(try h.answer(on: waiting).isEmpty)
        #expect(h.context.pendingCount == 1)
        try h.send(H.get("/c"), on: refused)
        #expect(try h.answer(on: refused).contains("x-mesh-error: circuit-open"))
        #expect(try h.upstreams.received(0).hasPrefix("GET /a "))
        try h.upstreams.respond(0, H.ok)
        h.loop.run()
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(h.upstreams.connections.count == 1, "the waiter gets the released connection")
        #expect(try h.upstreams.received(0).hasPrefix("GET /b "))
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer(on: waiting).hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    /// Each destination's waiters are its own: two services at their limit on one loop both
    /// number their first waiter 0, and a released connection goes to its own service's waiter.
    @Test func waitersOfTwoDestinationsAtTheirLimitsDoNotMix() throws {
        var payments = TrafficPolicy.default(service: "payments")
        payments.circuitBreaker.maxConnections = 1
        var ledger = TrafficPolicy.default(service: "ledger")
        ledger.circuitBreaker.maxConnections = 1
        let h = try H(rules: [RouteRule()], policy: payments, endpoints: [H.first], ledgerPolicy: ledger)
        let ledgerFirst = try h.anotherDownstream(), paymentsWaiter = try h.anotherDownstream()
        let ledgerWaiter = try h.anotherDownstream()
        try h.send(H.get("/a"))
        try h.send("GET /l1 HTTP/1.1\r\nHost: ledger\r\n\r\n", on: ledgerFirst)
        try h.send(H.get("/b"), on: paymentsWaiter)
        try h.send("GET /l2 HTTP/1.1\r\nHost: ledger\r\n\r\n", on: ledgerWaiter)
        #expect(h.context.pendingCount == 2)
        #expect(h.upstreams.connections.map(\.address) == [H.first, H.ledger])
        #expect(try h.upstreams.received(0).hasPrefix("GET /a "))
        #expect(try h.upstreams.received(1).hasPrefix("GET /l1 "))
        try h.upstreams.respond(0, H.ok)
        h.loop.run()
        let next = try h.upstreams.received(0)
        #expect(next.hasPrefix("GET /b "), "payments' connection went to payments' waiter: \(next)")
        try h.upstreams.respond(1, H.ok)
        h.loop.run()
        #expect(try h.upstreams.received(1).hasPrefix("GET /l2 "), "ledger's connection went to ledger's waiter")
        #expect(h.context.pendingCount == 0)
    }

    @Test func aPendingRequestGivesUpAfterTheConnectTimeout() throws {
        var policy = TrafficPolicy.default(service: "payments")
        policy.circuitBreaker.maxConnections = 1
        policy.connectTimeout = .seconds(2)
        let h = try H(rules: [RouteRule()], policy: policy, endpoints: [H.first])
        try h.send(H.get("/a"))
        let waiting = try h.anotherDownstream()
        try h.send(H.get("/b"), on: waiting)
        h.loop.advanceTime(by: .seconds(2))
        let answer = try h.answer(on: waiting)
        #expect(answer.contains("x-mesh-error: circuit-open"), "\(answer)")
        #expect(answer.contains("no connection came free within 2000 ms"))
    }

    @Test func consecutiveFailuresEjectAnEndpoint() throws {
        var policy = TrafficPolicy.default(service: "payments")
        policy.loadBalancer = .roundRobin
        policy.outlierDetection.consecutive5xx = 2
        let h = try H(rules: [RouteRule(retries: RetryPolicy(attempts: 1))], policy: policy)
        var served: [HostPort] = []
        for _ in 0..<8 {
            try h.send(H.get())
            let index = try #require(try (0..<h.upstreams.connections.count).first { !(try h.upstreams.received($0)).isEmpty })
            let address = h.upstreams.connections[index].address
            served.append(address)
            try h.upstreams.respond(index, address == H.first ? H.unavailable : H.ok)
            _ = try h.answer()
            h.loop.run()
        }
        #expect(Array(served.prefix(4)) == [H.first, H.second, H.first, H.second])
        #expect(served.dropFirst(4).allSatisfy { $0 == H.second }, "\(served)")
        #expect(h.metrics.peer("payments").outlierEjections.value == 1)
    }

    @Test func aFaultDelayHoldsTheRequestOnTheLoopsClock() throws {
        let fault = FaultInjection(delay: .init(percent: 100, duration: .milliseconds(500)))
        let h = try H(rules: [RouteRule(fault: fault)])
        try h.send(H.get())
        h.loop.advanceTime(by: .milliseconds(499))
        #expect(h.upstreams.connections.isEmpty)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(h.upstreams.connections.count == 1)
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test func aMirroredRequestIsCopiedToTheMirrorSubset() throws {
        let rule = RouteRule(
            backends: [WeightedBackend(subset: ["v": "1"], weight: 1)],
            mirror: TrafficMirror(subset: ["v": "2"]))
        let h = try H(rules: [rule])
        try h.send(H.get("/pay/m"))
        h.loop.run()
        let addresses = Set(h.upstreams.connections.map(\.address))
        #expect(addresses == [H.first, H.second])
        for index in h.upstreams.connections.indices {
            #expect(try h.upstreams.received(index).hasPrefix("GET /pay/m HTTP/1.1\r\n"))
        }
        let primary = try #require(h.upstreams.connections.firstIndex { $0.address == H.first })
        let mirror = try #require(h.upstreams.connections.firstIndex { $0.address == H.second })
        try h.upstreams.respond(mirror, H.unavailable)
        try h.upstreams.respond(primary, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"), "the mirror's answer never reaches the caller")
        #expect(h.metrics.mirrorRequests(peer: "payments", result: .completed).value == 1)
    }

    @Test func aStalledRequestBodyIs408() throws {
        let h = try H(rules: [RouteRule(timeout: .seconds(60))])
        try h.send("POST /pay HTTP/1.1\r\nHost: payments\r\nContent-Length: 10\r\n\r\n01234")
        #expect(try h.upstreams.received(0).hasSuffix("01234"))
        h.loop.advanceTime(by: .seconds(29))
        try h.send("56")
        h.loop.advanceTime(by: .seconds(29))
        #expect(try h.answer().isEmpty, "the body moved within the limit")
        h.loop.advanceTime(by: .seconds(1))
        let answer = try h.answer()
        #expect(answer.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(answer)")
        #expect(answer.contains("request body sent nothing for 30000 ms"))
    }

    /// Least-request and EWMA read the outstanding count per endpoint: every way an exchange
    /// ends (answered, a broken request body, the caller gone) gives its count back once.
    @Test func outstandingCountsReturnToZeroHoweverAnExchangeEnds() throws {
        let h = try H(rules: [RouteRule(retries: RetryPolicy(attempts: 1))], endpoints: [H.first])
        try h.send(H.get())
        #expect(h.outstanding(H.first) == 1)
        try h.upstreams.respond(0, H.ok)
        #expect(h.outstanding(H.first) == 0)

        try h.send("POST /pay HTTP/1.1\r\nHost: payments\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        #expect(h.outstanding(H.first) == 1)
        try h.send("lo\r\nzz\r\n")  // not a chunk size
        #expect(try h.answer().contains("400 Bad Request"))
        #expect(h.outstanding(H.first) == 0)

        let other = try h.anotherDownstream()
        try h.send(H.get(), on: other)
        #expect(h.outstanding(H.first) == 1)
        try other.close().wait()
        #expect(h.outstanding(H.first) == 0)
    }
}
