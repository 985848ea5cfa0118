/// Faults a route rule injects on purpose, to test callers' resilience: a delay before
/// forwarding and/or an abort with a chosen status (answered with `x-mesh-error: fault-injected`).
public struct FaultInjection: Sendable, Equatable {
    public struct Delay: Sendable, Equatable {
        /// 0–100.
        public var percent: Double
        public var duration: MeshDuration

        public init(percent: Double, duration: MeshDuration) {
            self.percent = percent
            self.duration = duration
        }
    }

    public struct Abort: Sendable, Equatable {
        /// 0–100.
        public var percent: Double
        /// 100–599.
        public var status: Int
        /// 1–16: what a gRPC call gets instead (trailers-only, `grpc-status`); nil: UNAVAILABLE.
        public var grpcStatus: Int?

        public init(percent: Double, status: Int, grpcStatus: Int? = nil) {
            self.percent = percent
            self.status = status
            self.grpcStatus = grpcStatus
        }
    }

    public var delay: Delay?
    public var abort: Abort?

    public init(delay: Delay? = nil, abort: Abort? = nil) {
        self.delay = delay
        self.abort = abort
    }
}
