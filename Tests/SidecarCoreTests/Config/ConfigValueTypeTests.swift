import Testing
@testable import SidecarCore

@Suite struct ConfigDurationTests {
    @Test(arguments: [
        ("250ms", Int64(250_000_000), "250ms"),
        ("2s", 2_000_000_000, "2s"),
        ("1m", 60_000_000_000, "1m"),
        ("1h", 3_600_000_000_000, "1h"),
        ("1.5s", 1_500_000_000, "1500ms"),
        ("0.25m", 15_000_000_000, "15s"),
        ("1m30s", 90_000_000_000, "90s"),
        ("3600s", 3_600_000_000_000, "1h"),
        ("0s", 0, "0s"),
    ])
    func parsesAndPrintsCanonically(text: String, nanoseconds: Int64, canonical: String) throws {
        let duration = try #require(MeshDuration(parsing: text))
        #expect(duration.nanoseconds == nanoseconds)
        #expect(duration.description == canonical)
        #expect(MeshDuration(parsing: canonical) == duration)
    }

    @Test(arguments: ["", "2", "2x", "s", "-1s", "1.5ms", "0.0001s", ".5s", "1.s", "2 s", "1d", "9999999999h", "1e3s", "١s"])
    func rejects(text: String) {
        #expect(MeshDuration(parsing: text) == nil)
    }

    @Test func convertsToNIOTimeAmount() {
        #expect(MeshDuration.milliseconds(250).timeAmount == .milliseconds(250))
    }
}

@Suite struct ConfigHostPortTests {
    @Test(arguments: ["127.0.0.1:8080", "0.0.0.0:0", "[::1]:15001", "[::]:65535", "localhost:80", "[2001:db8::1]:443",
                      "[::ffff:10.0.0.1]:1"])
    func validAddressesRoundTrip(text: String) throws {
        guard case .success(let address) = HostPort.parse(text) else {
            Issue.record("\(text) did not parse")
            return
        }
        #expect(address.description == text)
    }

    @Test(arguments: [
        ("127.0.0.1", "needs a port, as in 127.0.0.1:8080"),
        ("127.0.0.1:65536", "has port 65536 out of range 0..65535"),
        ("127.0.0.1:http", "has an invalid port \"http\""),
        ("127.0.0.1:+80", "has an invalid port \"+80\""),
        ("256.0.0.1:80", "has an invalid host \"256.0.0.1\""),
        ("::1:80", "needs brackets around an IPv6 address, as in [::1]:8080"),
        ("[::1:80", "has no closing \"]\""),
        ("[1::2::3]:80", "has an invalid IPv6 address \"1::2::3\""),
        ("bad_host:80", "has an invalid host \"bad_host\""),
    ])
    func invalidAddressesSayWhy(text: String, reason: String) {
        #expect(HostPort.parse(text) == .failure(HostPortError(reason)))
    }
}
