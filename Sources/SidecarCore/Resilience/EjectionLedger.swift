import Synchronization

/// Which endpoints of each destination are ejected on at least one event loop, so
/// `sidecar_endpoints{peer,state}` counts each endpoint once however many loops eject it:
/// `ejected` is the number of the destination's current endpoints ejected anywhere, `healthy`
/// the rest of its healthy endpoints.
///
/// Every loop runs its own `OutlierDetectorStateMachine` and tells its siblings about each
/// ejection (Envoy's workers follow the main thread's ejections the same way); this ledger
/// only keeps the gauges true. Threading: a `Mutex`, taken on ejections, un-ejections and
/// config snapshots only, never per request.
public final class EjectionLedger: Sendable {
    private struct Destination {
        /// Healthy endpoints of the current snapshot.
        var endpoints: Set<HostPort> = []
        /// Endpoint -> number of loops holding it ejected.
        var ejectedOn: [HostPort: Int] = [:]
        var gauges: (healthy: Gauge, ejected: Gauge)?
    }

    private let destinations = Mutex<[String: Destination]>([:])

    public init() {}

    /// A loop ejected (`true`) or returned (`false`) `endpoint`; moves the gauges if that
    /// changed whether it is ejected anywhere.
    public func record(service: String, endpoint: HostPort, ejected: Bool, metrics: SidecarMetrics) {
        update(service, metrics) { destination in
            let after = Swift.max(0, destination.ejectedOn[endpoint, default: 0] + (ejected ? 1 : -1))
            destination.ejectedOn[endpoint] = after == 0 ? nil : after
        }
    }

    /// A new snapshot's healthy endpoints of `service` (after `RouteTable` set its counts).
    public func setEndpoints(service: String, _ endpoints: some Sequence<HostPort>, metrics: SidecarMetrics) {
        let endpoints = Set(endpoints)
        update(service, metrics) { $0.endpoints = endpoints }
    }

    private func update(_ service: String, _ metrics: SidecarMetrics, _ body: (inout Destination) -> Void) {
        destinations.withLock { destinations in
            var destination = destinations[service] ?? Destination()
            body(&destination)
            if destination.gauges == nil {
                let peer = metrics.peer(service)
                destination.gauges = (peer.endpoints(.healthy), peer.endpoints(.ejected))
            }
            destinations[service] = destination
            Self.publish(destination)
        }
    }

    /// How many of `service`'s current endpoints are ejected on some loop.
    public func ejectedCount(service: String) -> Int {
        destinations.withLock { destinations in
            destinations[service].map(Self.ejected) ?? 0
        }
    }

    private static func ejected(_ destination: Destination) -> Int {
        destination.ejectedOn.keys.reduce(0) { $0 + (destination.endpoints.contains($1) ? 1 : 0) }
    }

    private static func publish(_ destination: Destination) {
        guard let gauges = destination.gauges else { return }
        let ejected = ejected(destination)
        gauges.ejected.set(Int64(ejected))
        gauges.healthy.set(Int64(destination.endpoints.count - ejected))
    }
}
