import Foundation
import NIOConcurrencyHelpers

/// Every control-plane metric and its Prometheus text exposition, in one small file.
///
/// Label values are bounded: route templates (never raw paths), status codes, service names.
/// Thread-safe behind one lock; `/metrics` renders it with the registry's instance counts.
public final class ControlPlaneMetrics: Sendable {
    static let pushBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private struct State {
        var requests: [RequestKey: Int] = [:]
        var certificatesIssued = 0
        var watchers = 0
        var pushBucketCounts = [Int](repeating: 0, count: ControlPlaneMetrics.pushBuckets.count)
        var pushCount = 0
        var pushSum = 0.0
    }

    private struct RequestKey: Hashable, Comparable {
        var route: String
        var code: Int
        static func < (lhs: RequestKey, rhs: RequestKey) -> Bool { (lhs.route, lhs.code) < (rhs.route, rhs.code) }
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public func countRequest(route: String, code: Int) {
        state.withLockedValue { $0.requests[RequestKey(route: route, code: code), default: 0] += 1 }
    }

    public func countCertificateIssued() {
        state.withLockedValue { $0.certificatesIssued += 1 }
    }

    public func setWatchers(_ count: Int) {
        state.withLockedValue { $0.watchers = count }
    }

    public func observePush(seconds: Double) {
        state.withLockedValue { state in
            state.pushCount += 1
            state.pushSum += seconds
            for (index, bound) in Self.pushBuckets.enumerated() where seconds <= bound {
                state.pushBucketCounts[index] += 1
            }
        }
    }

    public var watchers: Int { state.withLockedValue { $0.watchers } }
    public var certificatesIssued: Int { state.withLockedValue { $0.certificatesIssued } }
    public var pushCount: Int { state.withLockedValue { $0.pushCount } }

    /// Prometheus text format; `instances` counts by service and health.
    public func render(instances: [InstanceCount]) -> String {
        let snapshot = state.withLockedValue { $0 }
        var out = "# HELP control_plane_instances Instances known to the registry by service and health.\n"
        out += "# TYPE control_plane_instances gauge\n"
        for count in instances.sorted(by: { ($0.service, $0.health) < ($1.service, $1.health) }) {
            out += "control_plane_instances{service=\"\(Self.escape(count.service))\",health=\"\(count.health)\"} \(count.count)\n"
        }
        out += "# HELP control_plane_watchers Sidecar watch requests currently waiting for a change.\n"
        out += "# TYPE control_plane_watchers gauge\ncontrol_plane_watchers \(snapshot.watchers)\n"
        out += "# HELP control_plane_push_duration_seconds Time from a change to its acknowledgement by a sidecar.\n"
        out += "# TYPE control_plane_push_duration_seconds histogram\n"
        for (index, bound) in Self.pushBuckets.enumerated() {
            out += "control_plane_push_duration_seconds_bucket{le=\"\(Self.format(bound))\"} \(snapshot.pushBucketCounts[index])\n"
        }
        out += "control_plane_push_duration_seconds_bucket{le=\"+Inf\"} \(snapshot.pushCount)\n"
        out += "control_plane_push_duration_seconds_sum \(snapshot.pushSum)\n"
        out += "control_plane_push_duration_seconds_count \(snapshot.pushCount)\n"
        out += "# HELP control_plane_certificates_issued_total Workload certificates signed.\n"
        out += "# TYPE control_plane_certificates_issued_total counter\n"
        out += "control_plane_certificates_issued_total \(snapshot.certificatesIssued)\n"
        out += "# HELP control_plane_api_requests_total API requests by route template and status code.\n"
        out += "# TYPE control_plane_api_requests_total counter\n"
        for (key, value) in snapshot.requests.sorted(by: { $0.key < $1.key }) {
            out += "control_plane_api_requests_total{route=\"\(Self.escape(key.route))\",code=\"\(key.code)\"} \(value)\n"
        }
        return out
    }

    public struct InstanceCount: Sendable {
        public var service: String
        public var health: String
        public var count: Int
    }

    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func format(_ bound: Double) -> String {
        bound == bound.rounded() ? String(Int(bound)) : String(bound)
    }
}
