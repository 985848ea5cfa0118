import Testing

@testable import SidecarCore

/// Path normalization before routing and authorization (DESIGN.md "Identity and trust"): the
/// encodings attackers use to step out of an allowed prefix either normalize to the path the
/// upstream will really serve, or are refused.
@Suite struct HTTPRequestTargetTests {
    func normalized(_ target: String) throws -> String {
        try HTTPRequestTarget(parsing: target).originForm
    }

    func refusal(_ target: String) -> String? {
        do {
            _ = try HTTPRequestTarget(parsing: target)
            return nil
        } catch {
            return error.description
        }
    }

    @Test(arguments: [
        ("/pay/../admin/secret.txt", "/admin/secret.txt"),
        ("/pay/%2e%2e/admin/secret.txt", "/admin/secret.txt"),
        ("/pay/%2E%2e/admin/secret.txt", "/admin/secret.txt"),
        ("/pay/.%2E/admin", "/admin"),
        ("/pay/./x", "/pay/x"),
        ("/pay/%2e/x", "/pay/x"),
        ("/pay//x", "/pay/x"),
        ("//admin", "/admin"),
        ("/pay/x/..", "/pay/"),
        ("/pay/.", "/pay/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/p%61y/%7Euser", "/pay/~user"),
        ("/pay/%c3%a9t%C3%A9", "/pay/%C3%A9t%C3%A9"),
        ("/pay/%252e%252e/admin", "/pay/%252e%252e/admin"),  // decoded once: a literal "%2e%2e" segment
        ("/pay/a%20b?q=/../x", "/pay/a%20b?q=/../x"),  // the query is not a path
        ("/pay/../admin?x=1", "/admin?x=1"),
        ("/pay/x;v=1", "/pay/x;v=1"),
        ("/pay/...", "/pay/..."),
        ("/", "/"),
    ])
    func pathsNormalizeToWhatTheUpstreamServes(target: String, expected: String) throws {
        #expect(try normalized(target) == expected)
    }

    @Test(arguments: [
        ("/pay/..%2fadmin/secret.txt", "encoded slash"),
        ("/pay/..%2Fadmin", "encoded slash"),
        ("/pay/..%5cadmin", "encoded backslash"),
        ("/pay/..\\admin", "backslash"),
        ("/pay\\..\\admin", "backslash"),
        ("/pay/%00", "NUL"),
        ("/pay/%c0%ae%c0%ae/admin", "not valid UTF-8"),  // overlong "."
        ("/pay/%e0%80%ae", "not valid UTF-8"),
        ("/pay/%c3", "not valid UTF-8"),
        ("/pay/%zz", "two hex digits"),
        ("/pay/%2", "two hex digits"),
        ("/pay/..;/admin", "; parameters"),
        ("/pay/.;x/admin", "; parameters"),
        ("/pay/%2e%2e;/admin", "; parameters"),
        ("/pay#/../admin", "fragment"),
        ("pay/x", "neither a path"),
        ("ftp://payments/x", "neither a path"),
        ("http://user@payments/x", "userinfo"),
    ])
    func ambiguousPathsAreRefused(target: String, reason: String) {
        let refused = refusal(target)
        #expect(refused?.contains(reason) == true, "\(target): \(refused ?? "accepted")")
    }

    @Test func cleanPathsAreKeptAsSent() throws {
        for target in ["/pay", "/pay/x?y=1", "/a.b/c..d/.e", "/pay/x;y"] {
            let parsed = try HTTPRequestTarget(parsing: target)
            #expect(!parsed.isRewritten, "\(target)")
            #expect(parsed.originForm == target)
        }
    }

    @Test func absoluteFormGivesTheAuthorityAndAnOriginFormPath() throws {
        let parsed = try HTTPRequestTarget(parsing: "HTTP://payments:80/pay/../x?y=1")
        #expect(parsed.authority == "payments:80")
        #expect(parsed.originForm == "/x?y=1")
        #expect(parsed.isRewritten)
        #expect(try HTTPRequestTarget(parsing: "http://payments").originForm == "/")
        #expect(try HTTPRequestTarget(parsing: "http://payments?q").originForm == "/?q")
        #expect(try HTTPRequestTarget(parsing: "*").path == "*")
    }

    @Test func prefixesMatchWholeSegments() {
        let match: (String, String) -> Bool = { HTTPRequestTarget.path($0, hasSegmentPrefix: $1) }
        #expect(match("/pay", "/pay"))
        #expect(match("/pay/x", "/pay"))
        #expect(match("/pay/", "/pay"))
        #expect(!match("/payroll", "/pay"))
        #expect(match("/pay", "/pay/"))
        #expect(match("/pay/x", "/pay/"))
        #expect(!match("/payroll", "/pay/"))
        #expect(match("/anything", "/"))
        #expect(!match("*", "/"))
        #expect(!match("/pa", "/pay"))
        #expect(match("/pay", "") && match("/", "//"))
        // As routing hands them over: slices of the request's target.
        let target = "GET /pay/orders?q=1"
        let path = target.dropFirst(4).prefix { $0 != "?" }
        #expect(HTTPRequestTarget.path(path, hasSegmentPrefix: "/pay"))
        #expect(HTTPRequestTarget.path(path, hasSegmentPrefix: "/pay/orders/"))
        #expect(!HTTPRequestTarget.path(path, hasSegmentPrefix: "/pay/order"))
        #expect(!HTTPRequestTarget.path(path, hasSegmentPrefix: "/pay/orders/x"))
    }
}
