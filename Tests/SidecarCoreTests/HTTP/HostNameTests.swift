import Testing

@testable import SidecarCore

/// The name a `Host` gives, as routing and the gateway read it: port removed, lower-cased,
/// `.mesh` dropped where asked; IPv6 literals keep their brackets.
@Suite struct HostNameTests {
    @Test(arguments: [
        ("payments", "payments"), ("payments:8080", "payments"), ("Payments", "payments"),
        ("API.Example.com:443", "api.example.com"), ("[::1]:15001", "[::1]"), ("[::1]", "[::1]"),
        ("ÄPI.example", "äpi.example"), ("", ""),
    ])
    func theNameIsThePortlessLowerCaseHost(host: String, name: String) {
        #expect(HostName.of(Substring(host)) == name)
    }

    /// Also on slices of a larger string, as a request's head hands them over.
    @Test(arguments: [
        ("payments", "payments"), ("payments:80", "payments"), (":80", ""), ("a:b:80", "a:b"),
        ("[::1]:15001", "[::1]"), ("[::1]", "[::1]"), ("payments:", "payments"), ("", ""),
    ])
    func withoutPortKeepsWhatPrecedesTheLastColon(host: String, expected: String) {
        let line = "Host: " + host + ";"
        let slice = line.dropFirst(6).dropLast()
        #expect(HostName.withoutPort(slice) == expected)
        #expect(HostName.withoutPort(Substring(host)) == expected)
    }

    @Test func theMeshSuffixIsDroppedWhereAsked() {
        #expect(HostName.of("Payments.mesh:80", droppingSuffix: ".mesh") == "payments")
        #expect(HostName.of("payments.mesh", droppingSuffix: ".mesh") == "payments")
        #expect(HostName.of("payments.mesh") == "payments.mesh")
        #expect(HostName.of(".mesh", droppingSuffix: ".mesh") == "")
        #expect(HostName.of("mesh", droppingSuffix: ".mesh") == "mesh")
    }
}
