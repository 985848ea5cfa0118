import NIOCore

/// Least request by power of two choices (Envoy's `LEAST_REQUEST`, the default): of two random
/// candidates, the one with fewer requests outstanding on this loop.
struct LeastRequestBalancer: LoadBalancer {
    mutating func pick(
        _ candidates: [RouteTable.Endpoint], inFlight: (HostPort) -> Int, now: NIODeadline,
        random: inout some RandomNumberGenerator
    ) -> RouteTable.Endpoint {
        pickOfTwo(candidates, random: &random) { Double(inFlight($0.address)) }
    }
}
