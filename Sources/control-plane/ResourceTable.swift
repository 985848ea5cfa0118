import Foundation
import ControlPlane
import MeshAPI
import SidecarCore

/// The default `get` output: aligned columns, one row per resource or sidecar.
enum ResourceTable {
    static func resources(_ resources: [MeshResource]) -> String {
        var rows = [["KIND", "NAME", "SERVICE", "VERSION", "DETAIL"]]
        for resource in resources {
            rows.append([resource.kind.rawValue, resource.name, resource.service, resource.resourceVersion ?? "-", detail(resource)])
        }
        return render(rows)
    }

    static func proxies(_ proxies: [APIMessages.ProxyStatus]) -> String {
        var rows = [["NAME", "SERVICE", "ADDRESS", "HEALTH", "APPLIED", "CURRENT", "LAST SEEN", "STALE", "CERT EXPIRES", "REJECTED"]]
        for proxy in proxies {
            // The refused version and the sidecar's reason, last: the one column that may run long.
            let rejected = proxy.rejectedVersion.map { "\($0): \(proxy.rejectedReason ?? "")" } ?? "-"
            rows.append([
                proxy.name, proxy.service, "\(proxy.address):\(proxy.port)", proxy.health, proxy.appliedVersion ?? "-",
                proxy.currentVersion, "\(Int(proxy.lastSeenSecondsAgo.rounded()))s ago", proxy.stale ? "yes" : "no",
                proxy.certificateExpiresAt.map(TokenTable.rfc3339) ?? "-", rejected,
            ])
        }
        return render(rows)
    }

    private static func detail(_ resource: MeshResource) -> String {
        switch resource {
        case .service(let service): "protocol \(service.appProtocol.rawValue)"
        case .instance(let instance): "\(instance.endpoint) \(instance.health.rawValue)"
        case .route(let route): "\(route.rules.count) rule\(route.rules.count == 1 ? "" : "s")"
        case .trafficPolicy(let policy): "\(policy.loadBalancer)"
        case .authorizationPolicy(let policy): "default \(policy.defaultAction.rawValue), \(policy.allow.count) allow rules"
        case .authenticationPolicy(let policy):
            [policy.jwt.map { _ in "jwt" }, policy.apiKeys.map { "\($0.keys.count) api keys" }].compactMap { $0 }.joined(separator: ", ")
        case .gatewayRoute(let route):
            "hosts \(route.hosts.isEmpty ? "*" : route.hosts.joined(separator: ",")), \(route.rules.count) rule\(route.rules.count == 1 ? "" : "s")"
        }
    }

    /// Aligned columns; the first row is the header.
    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }
}

/// The `token list` table.
enum TokenTable {
    static func render(_ tokens: [APIMessages.TokenStatus]) -> String {
        var rows = [["ID", "SERVICE", "EXPIRES", "USES LEFT", "STATE"]]
        for token in tokens {
            rows.append([token.id, token.service, token.expires, token.usesLeft.map(String.init) ?? "unlimited", token.state])
        }
        return ResourceTable.render(rows)
    }

    static func rfc3339(_ seconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
