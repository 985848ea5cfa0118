/// What a control-plane snapshot must satisfy on this sidecar beyond being valid resources:
/// the checks only the sidecar can make, because they depend on its own bootstrap file, which
/// the control plane never sees. A snapshot that fails one is refused whole (the running
/// configuration stays), counted and reported to the control plane with the reason.
///
/// Pure: no I/O, the same answer for the same input.
public enum SnapshotCheck {
    /// Why this sidecar cannot apply `resources` under `configuration`; nil when it can.
    public static func problem(_ configuration: SidecarConfiguration, resources: [MeshResource]) -> String? {
        for resource in resources {
            guard case .authorizationPolicy(let policy) = resource, policy.service == configuration.service else { continue }
            // A TCP inbound sees no method and no path: such a rule could never match, and
            // the policy would silently refuse every caller it was written to allow.
            if configuration.inbound.appProtocol == .tcp,
               let index = policy.allow.firstIndex(where: { !$0.methods.isEmpty || $0.pathPrefix != nil }) {
                return "AuthorizationPolicy \(policy.name): allow[\(index)] names methods or a pathPrefix, "
                    + "but this sidecar's inbound is tcp (no HTTP request to match)"
            }
        }
        return gatewayProblem(resources)
    }

    /// Every gateway rule's `auth` names an AuthenticationPolicy the snapshot carries (a
    /// missing one would refuse every request to the rule).
    static func gatewayProblem(_ resources: [MeshResource]) -> String? {
        var policies = Set<String>()
        for case .authenticationPolicy(let policy) in resources { policies.insert(policy.name) }
        for case .gatewayRoute(let route) in resources {
            for (index, rule) in route.rules.enumerated() {
                if let auth = rule.auth, !policies.contains(auth) {
                    return "GatewayRoute \(route.name): rules[\(index)].auth names AuthenticationPolicy \(auth), which does not exist"
                }
            }
        }
        return nil
    }
}
