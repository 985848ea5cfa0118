import NIOCore

/// Takes the candidates in turn (the turn counter is per destination and loop).
struct RoundRobinBalancer: LoadBalancer {
    private var next = 0

    mutating func pick(
        _ candidates: [RouteTable.Endpoint], inFlight: (HostPort) -> Int, now: NIODeadline,
        random: inout some RandomNumberGenerator
    ) -> RouteTable.Endpoint {
        defer { next &+= 1 }
        return candidates[next % candidates.count]
    }
}
