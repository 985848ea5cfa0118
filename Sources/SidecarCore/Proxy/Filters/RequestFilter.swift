import NIOCore

/// One policy step a request passes before it is sent upstream: the hop limit, routing, a
/// route's rate limit, the circuit breaker, fault injection on the outbound; authorization and
/// the service's rate limit on the inbound. Each is small and knows nothing of the others;
/// `RequestFilters` lists them in request order, and the next features (JWT, cache, gRPC
/// mapping) join as one more filter (the way linkerd2-proxy stacks one layer per concern).
///
/// A filter reads and refines the `AdmittedRequest` and says whether the request goes on,
/// is answered here with a `ProxyError`, or goes on after a delay. It runs on the
/// connection's event loop and may use that loop's state (limits, randomness, metrics).
protocol RequestFilter: Sendable {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision
}

/// What a `RequestFilter` decided.
enum FilterDecision {
    /// On to the next filter.
    case next
    /// Answer the request here (the exchange ends; nothing goes upstream).
    case reject(ProxyError)
    /// On to the next filter after this long (on the loop's timer; the route timeout runs on).
    case delay(TimeAmount)
    /// Answer here with a response that is no error (gateway: a redirect, a CORS preflight).
    case answer(EdgeResponse)
}

/// A request being admitted: the parsed head and normalized target, the exchange it will
/// become, and what the filters decided so far (where it goes, which headers change).
struct AdmittedRequest {
    let head: HTTPRawRequestHead
    let target: HTTPRequestTarget
    let exchange: ProxyExchange
    /// The verified calling service (inbound), from the TLS handshake.
    let caller: String?
    /// Outbound, once `RoutingFilter` ran: the destination, its matching rule and the rule's index.
    var route: (destination: RouteTable.Destination, rule: RouteRule, index: Int)?
    /// Gateway: which listener took the request (plain, TLS, redirecting).
    var listener: GatewayListenerRole?
    /// Gateway: the client's IP address (rate limits keyed by `client-ip`).
    var client: String?
    /// Gateway: the rule that took the request, and the origin-form target to send upstream
    /// when the rule rewrites the path.
    var gatewayMatch: GatewayTable.Match?
    var upstreamTarget: String?
    /// Gateway: who authentication verified (JWT subject or API key name), for `x-mesh-user`.
    var user: String?
    /// Header names dropped from the head going upstream (any spelling, see `HTTPHeadWriter`).
    var removedHeaders: [String] = Self.emptyList()
    /// Header lines set on the head going upstream (replacing any received of the same name).
    var addedHeaders: [HTTPHeaderLine] = Self.emptyList()

    /// Room for the lines every hop adds (request id, trace, hops, caller): one allocation
    /// per list, not one per doubling.
    private static func emptyList<Element>() -> [Element] {
        var list: [Element] = []
        list.reserveCapacity(4)
        return list
    }
    /// `/explain`: filters decide as for a real request but take nothing (no rate-limit token,
    /// no breaker slot, no counted rejection) and leave chance to the report (fault percentages).
    var dryRun = false
}

/// The filter chains of the two directions, in request order.
enum RequestFilters {
    static let outbound: [any RequestFilter] = [
        HopLimitFilter(), RoutingFilter(), RouteRateLimitFilter(), CircuitBreakerFilter(),
        FaultAbortFilter(), FaultDelayFilter(),
    ]
    static let inbound: [any RequestFilter] = [AuthorizationFilter(), InboundRateLimitFilter()]
    /// The front door: an external request is routed by a GatewayRoute to a mesh service, then
    /// treated as any caller's request to that service (its Route, breaker, faults).
    static let gateway: [any RequestFilter] = [
        HTTPSRedirectFilter(), HopLimitFilter(), GatewayRoutingFilter(), GatewayRulePolicyFilter(),
        RouteRateLimitFilter(), CircuitBreakerFilter(), FaultAbortFilter(), FaultDelayFilter(),
    ]
    /// The gateway rule's own policies, in order (`GatewayRulePolicyFilter` runs them).
    static let gatewayRule: [any RequestFilter] = [CORSFilter(), BodySizeLimitFilter(), AuthenticationFilter(), GatewayRateLimitFilter()]
}

extension RequestFilters {
    /// Where a run of the chain stopped.
    enum Outcome {
        /// Every filter admitted the request.
        case admitted(AdmittedRequest)
        /// A filter answered it with an error.
        case rejected(ProxyError)
        /// A filter answered it itself (a gateway's CORS preflight, redirect).
        case answered(EdgeResponse)
        /// A filter holds it: run `remaining` on `request` after `delay` (the route timeout runs on).
        case delayed(TimeAmount, request: AdmittedRequest, remaining: ArraySlice<any RequestFilter>)
    }

    /// Where a run over a request held in place stopped short of admitting it.
    enum Stop {
        case rejected(ProxyError)
        case answered(EdgeResponse)
        case delayed(TimeAmount, remaining: ArraySlice<any RequestFilter>)
    }

    /// Runs `filters` in order on `request`, until one rejects or delays it; nil when every
    /// filter admitted it. Both codecs (HTTP/1.1 connections and HTTP/2 streams) admit through
    /// here, so a request gets the same decisions whichever protocol carried it. In place: the
    /// HTTP/1.1 handler's request is never copied (a copy shares the header lists, and the
    /// first filter to add a header would copy them again).
    static func run(
        _ request: inout AdmittedRequest, through filters: ArraySlice<any RequestFilter>, loop: LoopContext, now: NIODeadline
    ) -> Stop? {
        var remaining = filters
        while let filter = remaining.popFirst() {
            switch filter.admit(&request, loop: loop, now: now) {
            case .next: continue
            case .reject(let error): return .rejected(error)
            case .answer(let response): return .answered(response)
            case .delay(let delay): return .delayed(delay, remaining: remaining)
            }
        }
        return nil
    }

    /// The same, handing the request back in the outcome.
    static func run(
        _ request: consuming AdmittedRequest, through filters: ArraySlice<any RequestFilter>, loop: LoopContext, now: NIODeadline
    ) -> Outcome {
        var request = request
        switch run(&request, through: filters, loop: loop, now: now) {
        case nil: return .admitted(request)
        case .rejected(let error)?: return .rejected(error)
        case .answered(let response)?: return .answered(response)
        case .delayed(let delay, let remaining)?: return .delayed(delay, request: request, remaining: remaining)
        }
    }
}

extension AdmittedRequest {
    /// The headers every hop sets, whichever codec carried the request: `x-request-id` when
    /// none came, this hop's span of the caller's trace (a new span id goes upstream), and the
    /// identity headers only the mesh sets: removed in every spelling, and on the inbound
    /// `x-mesh-caller` from the verified certificate.
    mutating func setHopHeaders(inbound: Bool, random: inout LoopRandom) {
        if head.headers.firstIndex(of: .requestID) == nil {
            addedHeaders.append(HTTPHeaderLine(generatedName: "x-request-id", value: exchange.requestID))
        }
        let received = head.headers.firstIndex(of: .traceparent)
        let trace = received.map { head.headers.withValueBytes(at: $0) { TraceContext.nextHop(afterBytes: $0, using: &random) } }
            ?? TraceContext.nextHop(afterBytes: nil, using: &random)
        exchange.trace = trace
        addedHeaders.append(HTTPHeaderLine(generatedName: "traceparent", value: trace.traceparent))
        if inbound {
            // The caller is the verified certificate's. x-mesh-user stays as the calling sidecar
            // sent it: outbounds remove any an app set, so only a gateway's authentication sets one.
            removedHeaders.append("x-mesh-caller")
            // A service name out of a SPIFFE ID: letters, digits, `.`, `-`, `_` only (`SPIFFEID`).
            addedHeaders.append(HTTPHeaderLine(generatedName: "x-mesh-caller", value: caller ?? "unknown"))
        } else {
            // No app (or outside client, at a gateway) may claim a caller or user identity on
            // its way out: only the gateway sets x-mesh-user, after authentication.
            removedHeaders += HTTPProxyHandler.identityHeaders
        }
    }
}
