/// Decides whether a caller (the SPIFFE service name from its verified certificate) may make a
/// request to this sidecar's service under its AuthorizationPolicy. No policy allows everyone.
/// `path` must already be normalized (`HTTPRequestTarget`); `pathPrefix` matches whole segments.
enum Authorizer {
    static func allows(
        _ policy: AuthorizationPolicy?, caller: String?, method: String, path: Substring
    ) -> Bool {
        guard let policy else { return true }
        for rule in policy.allow {
            if !rule.from.isEmpty {
                guard let caller, rule.from.contains(caller) || rule.from.contains("*") else { continue }
            }
            if !rule.methods.isEmpty, !rule.methods.contains(method) { continue }
            if let prefix = rule.pathPrefix, !HTTPRequestTarget.path(path, hasSegmentPrefix: prefix) { continue }
            return true
        }
        return policy.defaultAction == .allow
    }
}

extension RouteTable {
    /// `Authorizer.allows` with this table's policy, read in place (passing the optional policy
    /// from outside copied it, retaining each of its arrays, per request).
    func allows(caller: String?, method: String, path: Substring) -> Bool {
        Authorizer.allows(authorization, caller: caller, method: method, path: path)
    }
}
