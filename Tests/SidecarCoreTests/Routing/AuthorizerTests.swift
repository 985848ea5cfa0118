import Testing

@testable import SidecarCore

/// Every part of an AuthorizationPolicy rule decides on its own: callers (and the `*`
/// wildcard), methods, whole-segment path prefixes, and the default action when no rule allows.
@Suite struct AuthorizerTests {
    func allows(_ policy: AuthorizationPolicy?, _ caller: String?, _ method: String, _ path: String) -> Bool {
        Authorizer.allows(policy, caller: caller, method: method, path: Substring(path))
    }

    @Test func noPolicyAllowsEveryone() {
        #expect(allows(nil, "web", "DELETE", "/admin"))
        #expect(allows(nil, nil, "GET", "/"))
    }

    @Test func callersMustBeListedOrWildcarded() {
        let listed = AuthorizationPolicy(service: "payments", allow: [.init(from: ["web", "orders"])])
        #expect(allows(listed, "web", "GET", "/"))
        #expect(allows(listed, "orders", "POST", "/x"))
        #expect(!allows(listed, "batch", "GET", "/"))
        #expect(!allows(listed, nil, "GET", "/"), "an unidentified caller matches no list")
        let wildcard = AuthorizationPolicy(service: "payments", allow: [.init(from: ["*"])])
        #expect(allows(wildcard, "batch", "GET", "/"))
        #expect(!allows(wildcard, nil, "GET", "/"), "* means any identified caller")
        let anyone = AuthorizationPolicy(service: "payments", allow: [.init(methods: ["GET"])])
        #expect(allows(anyone, nil, "GET", "/"), "a rule without from takes any caller")
    }

    @Test func methodsMustBeListed() {
        let policy = AuthorizationPolicy(service: "payments", allow: [.init(from: ["web"], methods: ["GET", "HEAD"])])
        #expect(allows(policy, "web", "GET", "/pay"))
        #expect(allows(policy, "web", "HEAD", "/pay"))
        #expect(!allows(policy, "web", "POST", "/pay"))
        #expect(!allows(policy, "web", "get", "/pay"), "methods are case-sensitive tokens")
    }

    @Test func pathPrefixesMatchWholeSegments() {
        let policy = AuthorizationPolicy(service: "payments", allow: [.init(from: ["web"], pathPrefix: "/pay/")])
        #expect(allows(policy, "web", "GET", "/pay/x"))
        #expect(allows(policy, "web", "GET", "/pay"))
        #expect(!allows(policy, "web", "GET", "/payroll"))
        #expect(!allows(policy, "web", "GET", "/admin/secret.txt"))
        let bare = AuthorizationPolicy(service: "payments", allow: [.init(from: ["web"], pathPrefix: "/pay")])
        #expect(allows(bare, "web", "GET", "/pay/x"))
        #expect(!allows(bare, "web", "GET", "/payroll"))
    }

    @Test func theDefaultActionAppliesWhenNoRuleAllows() {
        let deny = AuthorizationPolicy(service: "payments", defaultAction: .deny, allow: [.init(from: ["web"])])
        #expect(!allows(deny, "orders", "GET", "/"))
        let allow = AuthorizationPolicy(service: "payments", defaultAction: .allow, allow: [.init(from: ["web"], methods: ["GET"])])
        #expect(allows(allow, "orders", "POST", "/"))
        let empty = AuthorizationPolicy(service: "payments", defaultAction: .deny)
        #expect(!allows(empty, "web", "GET", "/"))
    }

    @Test func everyFieldOfARuleMustMatchAndAnyRuleMayAllow() {
        let policy = AuthorizationPolicy(service: "payments", defaultAction: .deny, allow: [
            .init(from: ["web"], methods: ["GET"], pathPrefix: "/pay"),
            .init(from: ["admin-tool"], methods: ["POST"], pathPrefix: "/admin"),
        ])
        #expect(allows(policy, "web", "GET", "/pay/1"))
        #expect(!allows(policy, "web", "POST", "/pay/1"))
        #expect(!allows(policy, "web", "GET", "/admin"))
        #expect(allows(policy, "admin-tool", "POST", "/admin/x"))
        #expect(!allows(policy, "admin-tool", "GET", "/admin/x"))
    }
}
