import NIOCore

/// Decides, for one request, whether a failed try is tried again, after what backoff, and
/// why not when it is not. The proxy carries out the answer (timer, new lease, error response).
///
/// Invariants: a try is retried only when its failure is in the route's `retryOn`, the request
/// is safe to send again (idempotent method or `Idempotency-Key`, or the failure provably
/// never reached the upstream: connect failure, refused stream), every body byte already
/// forwarded is still replayable (at most `maxReplayBodyBytes`), fewer than `attempts` tries
/// have started, the next try would start before the route deadline, and the destination's
/// retry budget has room. Backoff is exponential with full jitter:
/// `uniform(0 ... min(max, base * 2^(retry-1)))`.
///
/// A pure value: time (`now`) and randomness (`rng`) are parameters. One per request, owned
/// by the request's handler on its event loop; no locks, no allocation.
public struct RetryStateMachine: Sendable {
    /// The most request-body bytes buffered for replay; a try that forwarded more is final.
    public static let maxReplayBodyBytes = 64 * 1024

    /// What the proxy knows about the request when it starts.
    public struct Request: Sendable, Equatable {
        public var method: HTTPRequestMethod
        /// The request carries an `Idempotency-Key` header.
        public var hasIdempotencyKey: Bool
        /// nil: no body or length unknown (chunked) until it has been read.
        public var contentLength: Int?

        /// A gRPC call: a gRPC status the route retries on is the operator's word that the
        /// call may be sent again (as Envoy's `retry_on: unavailable`), whatever its method.
        public var isGRPC = false

        public init(method: HTTPRequestMethod, hasIdempotencyKey: Bool = false, contentLength: Int? = nil, isGRPC: Bool = false) {
            self.isGRPC = isGRPC
            self.method = method
            self.hasIdempotencyKey = hasIdempotencyKey
            self.contentLength = contentLength
        }
    }

    /// How a try failed.
    public enum Failure: Sendable, Hashable {
        /// TCP connect (or mTLS to the upstream sidecar) failed or timed out: nothing was sent.
        case connectFailure
        /// The upstream refused the stream before processing it (HTTP/2 REFUSED_STREAM).
        case refusedStream
        /// The upstream closed before any response byte; the request may have been processed.
        case reset
        /// The try's `perTryTimeout` passed before a response head.
        case perTryTimeout
        /// A complete response head with this status (the proxy has not sent it downstream).
        case status(Int)
        /// A gRPC call answered trailers-only with this `grpc-status` (nothing sent downstream yet).
        case grpcStatus(Int)

        /// Whether the upstream app may have seen the request. Only `false` is proof.
        public var mayHaveReachedUpstream: Bool {
            switch self {
            case .connectFailure, .refusedStream: false
            case .reset, .perTryTimeout, .status, .grpcStatus: true
            }
        }

        /// The `reason` label of `sidecar_retries_total` (bounded).
        public var reason: String {
            switch self {
            case .connectFailure: "connect-failure"
            case .refusedStream: "refused-stream"
            case .reset: "reset"
            case .perTryTimeout: "per-try-timeout"
            case .status(let code): (100...599).contains(code) ? Self.statusReasons[code - 100] : "status"
            case .grpcStatus(let code): GRPCRetryStatus.allCases.first { $0.code == code }?.rawValue ?? "grpc-status"
            }
        }

        private static let statusReasons = (100...599).map { String($0) }

        /// Whether `condition` (from a route's `retryOn`) covers this failure, with Envoy's
        /// meaning: `5xx` and `gateway-error` also cover the failures that produce no response
        /// (connect failure, refused stream, reset, per-try timeout); `reset` covers a
        /// per-try timeout (no response byte arrived either). A refused stream is covered by
        /// whatever covers a reset or a connect failure (it provably never reached the app), and
        /// a gRPC status only by its own `retryOn` word (`unavailable`, …).
        public func isCovered(by condition: RetryCondition) -> Bool {
            switch (condition, self) {
            case (.connectFailure, .connectFailure), (.refusedStream, .refusedStream),
                (.reset, .reset), (.reset, .perTryTimeout):
                return true
            // A refused stream never reached the app: whatever covers a reset covers it too.
            case (.reset, .refusedStream), (.connectFailure, .refusedStream):
                return true
            case (.grpc(let wanted), .grpcStatus(let code)):
                return wanted.code == code
            case (.serverError, .status(let code)):
                return (500...599).contains(code)
            case (.gatewayError, .status(let code)):
                return code == 502 || code == 503 || code == 504
            case (.serverError, .grpcStatus), (.gatewayError, .grpcStatus):
                return false
            case (.serverError, _), (.gatewayError, _):
                return true  // the no-response failures; statuses were matched above
            case (.status(let wanted), .status(let code)):
                return wanted == code
            default:
                return false
            }
        }
    }

    /// Why a failed try is final.
    public enum GiveUpReason: String, Sendable, Hashable {
        /// The failure is not in the route's `retryOn`.
        case notRetryable = "not-retryable"
        /// Not idempotent, no `Idempotency-Key`, and the upstream may have seen it.
        case notIdempotent = "not-idempotent"
        /// More body bytes than `maxReplayBodyBytes` were forwarded: nothing to replay.
        case bodyTooLarge = "body-too-large"
        /// `attempts` tries have started.
        case attemptsExhausted = "attempts-exhausted"
        /// The next try could not start before the route deadline.
        case deadline = "deadline"
        /// The destination's circuit breaker already has `maxRetries` retries in flight (set by
        /// the proxy after this machine said `.retry`).
        case maxRetries = "max-retries"
    }

    public enum Action: Sendable, Equatable {
        /// Start the next try after `after`, on another endpoint than `excludeEndpoint` when
        /// the destination has one. The budget has already counted this retry.
        case retry(after: TimeAmount, excludeEndpoint: HostPort?)
        /// Answer with this try's failure (its response or the matching sidecar error).
        case giveUp(GiveUpReason)
        /// Would have retried but the destination's retry budget is spent: count
        /// `sidecar_retry_budget_exhausted_total{peer}` and answer with this try's failure.
        case budgetExhausted
    }

    public let policy: RetryPolicy
    /// The route's overall deadline: no try starts at or after it.
    public let deadline: NIODeadline
    /// Tries started so far, the first included (starts at 1).
    public private(set) var attempt = 1
    private let safeToResend: Bool
    private let isGRPC: Bool
    private var bodyReplayable = true
    private let contentLength: Int?

    /// Made when the first try starts.
    public init(policy: RetryPolicy, request: Request, deadline: NIODeadline) {
        self.policy = policy
        self.deadline = deadline
        self.safeToResend = request.method.isIdempotent || request.hasIdempotencyKey
        self.isGRPC = request.isGRPC
        self.contentLength = request.contentLength
    }

    /// Whether the proxy should keep a copy of the request body for replay. False when
    /// retries are off, the request may not be sent again once it reached the upstream (not
    /// idempotent, no `Idempotency-Key`: a copy could never be used), or the declared length
    /// already exceeds `maxReplayBodyBytes`.
    public var shouldBufferBody: Bool {
        guard policy.attempts > 1, safeToResend || isGRPC, bodyReplayable else { return false }
        if let contentLength { return contentLength <= Self.maxReplayBodyBytes }
        return true
    }

    /// Reports the body bytes forwarded upstream so far in this try (a running total).
    /// Returns `shouldBufferBody`: false once the body outgrew the replay buffer, after which
    /// no failure that may have reached the upstream is retried (the buffer can be dropped).
    /// A body the proxy was told not to buffer (`shouldBufferBody` false from the start, e.g. a
    /// declared length over the limit) is not replayable from its first forwarded byte.
    @discardableResult
    public mutating func requestBodyForwarded(totalBytes: Int) -> Bool {
        if totalBytes > Self.maxReplayBodyBytes || (totalBytes > 0 && !shouldBufferBody) { bodyReplayable = false }
        return shouldBufferBody
    }

    /// When the current try must have its response head: `perTryTimeout` from `now`,
    /// never past the route deadline.
    public func tryDeadline(now: NIODeadline) -> NIODeadline {
        guard let perTry = policy.perTryTimeout else { return deadline }
        return min(now + perTry.timeAmount, deadline)
    }

    /// The largest backoff before retry number `retry` (1 = the first retry), in nanoseconds:
    /// `min(max, base * 2^(retry-1))`, without overflow.
    public func backoffCeiling(retry: Int) -> Int64 {
        let base = policy.backoff.base.nanoseconds
        let cap = Swift.max(policy.backoff.max.nanoseconds, base)
        let shift = Swift.min(Swift.max(retry - 1, 0), 62)
        let (scaled, overflow) = base.multipliedReportingOverflow(by: Int64(1) << shift)
        return overflow ? cap : Swift.min(scaled, cap)
    }

    /// Called once per failed try, at `now`, with the endpoint that failed. On `.retry` the
    /// attempt count and the budget have already moved; start the next try after the delay.
    public mutating func decide(
        after failure: Failure, from endpoint: HostPort?, now: NIODeadline,
        budget: inout RetryBudgetStateMachine, using rng: inout some RandomNumberGenerator
    ) -> Action {
        guard attempt < policy.attempts else { return .giveUp(.attemptsExhausted) }
        guard policy.retryOn.contains(where: failure.isCovered(by:)) else { return .giveUp(.notRetryable) }
        if failure.mayHaveReachedUpstream {
            let grpcOptIn: Bool
            if isGRPC, case .grpcStatus = failure { grpcOptIn = true } else { grpcOptIn = false }
            guard safeToResend || grpcOptIn else { return .giveUp(.notIdempotent) }
            guard bodyReplayable else { return .giveUp(.bodyTooLarge) }
        } else if !bodyReplayable {
            // An earlier try forwarded (and lost) more than the replay buffer holds.
            return .giveUp(.bodyTooLarge)
        }
        let ceiling = backoffCeiling(retry: attempt)
        let backoff = ceiling > 0 ? Int64.random(in: 0...ceiling, using: &rng) : 0
        guard now + .nanoseconds(backoff) < deadline else { return .giveUp(.deadline) }
        guard budget.canRetry(now: now) else { return .budgetExhausted }
        budget.retryStarted(now: now)
        attempt += 1
        return .retry(after: .nanoseconds(backoff), excludeEndpoint: endpoint)
    }
}
