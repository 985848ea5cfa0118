/// How a route rule retries: how many tries in all, the timeout of each, on which failures,
/// and the exponential backoff (with jitter) between tries.
///
/// Retries still happen only where safe (idempotent or never reached the upstream, body at
/// most 64 KiB) and while the service's retry budget has room; this policy cannot widen that.
public struct RetryPolicy: Sendable, Equatable {
    /// All tries including the first; at least 1 (1 disables retries).
    public var attempts: Int
    /// nil: each try may use what is left of the rule's timeout.
    public var perTryTimeout: MeshDuration?
    public var retryOn: [RetryCondition]
    public var backoff: RetryBackoff

    public init(
        attempts: Int = MeshDefaults.retryAttempts,
        perTryTimeout: MeshDuration? = nil,
        retryOn: [RetryCondition] = MeshDefaults.retryOn,
        backoff: RetryBackoff = MeshDefaults.backoff
    ) {
        self.attempts = attempts
        self.perTryTimeout = perTryTimeout
        self.retryOn = retryOn
        self.backoff = backoff
    }

    /// attempts 2, retryOn [connect-failure, reset, 503], backoff 25ms..250ms.
    public static let `default` = RetryPolicy()
}

/// A failure that may trigger a retry, written as in config.
public enum RetryCondition: Sendable, Hashable, CustomStringConvertible {
    /// TCP connect failed or timed out.
    case connectFailure
    /// The upstream closed before any response byte.
    case reset
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM); never reached the app.
    case refusedStream
    /// Any 5xx response.
    case serverError
    /// 502, 503 or 504.
    case gatewayError
    /// One status code, 100–599.
    case status(Int)
    /// A gRPC call ended with this status (`unavailable`, `resource-exhausted`, `cancelled`,
    /// `deadline-exceeded`) before any response message reached the caller.
    case grpc(GRPCRetryStatus)

    public static let keywords = ["connect-failure", "reset", "refused-stream", "5xx", "gateway-error"]
        + GRPCRetryStatus.allCases.map(\.rawValue)

    public init?(parsing text: String) {
        switch text {
        case "connect-failure": self = .connectFailure
        case "reset": self = .reset
        case "refused-stream": self = .refusedStream
        case "5xx": self = .serverError
        case "gateway-error": self = .gatewayError
        default:
            if let status = GRPCRetryStatus(rawValue: text) {
                self = .grpc(status)
                return
            }
            guard text.count == 3, let code = Int(text), (100...599).contains(code) else { return nil }
            self = .status(code)
        }
    }

    public var description: String {
        switch self {
        case .connectFailure: "connect-failure"
        case .reset: "reset"
        case .refusedStream: "refused-stream"
        case .serverError: "5xx"
        case .gatewayError: "gateway-error"
        case .status(let code): String(code)
        case .grpc(let status): status.rawValue
        }
    }
}

/// The gRPC statuses a route may retry on (DESIGN.md "Protocols").
public enum GRPCRetryStatus: String, Sendable, Hashable, CaseIterable {
    case unavailable
    case resourceExhausted = "resource-exhausted"
    case cancelled
    case deadlineExceeded = "deadline-exceeded"

    /// The `grpc-status` code.
    public var code: Int {
        switch self {
        case .unavailable: 14
        case .resourceExhausted: 8
        case .cancelled: 1
        case .deadlineExceeded: 4
        }
    }
}

/// Exponential backoff between tries: base * 2^(try-1) with full jitter, capped at `max`.
public struct RetryBackoff: Sendable, Equatable {
    public var base: MeshDuration
    /// At least `base`.
    public var max: MeshDuration

    public init(base: MeshDuration, max: MeshDuration) {
        self.base = base
        self.max = max
    }
}
