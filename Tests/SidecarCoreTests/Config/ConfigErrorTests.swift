import Foundation
import Testing
@testable import SidecarCore

/// What an operator sees when a sidecar config is wrong: one line per problem, with file,
/// line and key path.
@Suite struct ConfigErrorTests {
    /// Every issue's printed line, or a recorded failure if the YAML loaded.
    func issues(_ yaml: String, file: String = "web.yaml") -> [String] {
        do {
            let config = try SidecarConfiguration.decode(yaml: yaml, fileName: file)
            Issue.record("expected errors, loaded \(config)")
            return []
        } catch {
            #expect(error.description == error.issues.map(\.description).joined(separator: "\n"))
            return error.issues.map(\.description)
        }
    }

    @Test func badDurationNamesFileLinePathAndTheAcceptedForms() {
        let yaml = ConfigFixtures.webYAML.replacingOccurrences(of: "timeout: 2s", with: "timeout: 2x")
        #expect(issues(yaml) == [
            #"web.yaml:17: resources[1].rules[0].timeout: "2x" is not a duration (use 250ms, 2s, 1m)"#
        ])
    }

    @Test func unknownKeySuggestsTheNearestKnownKey() {
        let yaml = ConfigFixtures.webYAML.replacingOccurrences(of: "    rules:", with: "    rulez:")
        #expect(issues(yaml) == [
            "web.yaml:13: resources[1].rules: is required",
            #"web.yaml:15: resources[1].rulez: unknown key (did you mean "rules"?)"#,
        ])
    }

    @Test func unknownTopLevelKeyListsTheAllowedOnes() {
        let found = issues(ConfigFixtures.sidecar("colour: blue\n"))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("web.yaml:4: colour: unknown key (allowed: service, inbound, ") == true)
    }

    @Test func wrongTypes() {
        let yaml = ConfigFixtures.webYAML
            .replacingOccurrences(of: "port: 16006", with: "port: [16006]")
            .replacingOccurrences(of: "labels: { version: v1 }", with: "labels: v1")
        #expect(issues(yaml) == [
            "web.yaml:11: resources[0].port: expected an integer, got a list",
            #"web.yaml:12: resources[0].labels: expected a mapping, got "v1""#,
        ])
        let quoted = ConfigFixtures.webYAML.replacingOccurrences(of: "port: 16006", with: #"port: "16006""#)
        #expect(issues(quoted) == [#"web.yaml:11: resources[0].port: expected an integer, got "16006""#])
    }

    @Test func missingService() {
        let yaml = ConfigFixtures.sidecar().replacingOccurrences(of: "service: web\n", with: "")
        #expect(issues(yaml) == ["web.yaml:1: service: is required"])
    }

    @Test func neitherTLSNorControlPlane() {
        let yaml = "service: web\ninbound: { app: 127.0.0.1:8080 }\n"
        #expect(issues(yaml) == [
            "web.yaml:1: needs tls (static mode: cert, key, trustBundle) or controlPlane (dynamic mode: address, tokenFile, caFile)"
        ])
    }

    @Test func portsOutOfRange() {
        let yaml = ConfigFixtures.sidecar().replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:70000")
        #expect(issues(yaml) == [#"web.yaml:2: inbound.app: "127.0.0.1:70000" has port 70000 out of range 0..65535"#])

        let instance = ConfigFixtures.webYAML.replacingOccurrences(of: "port: 16006", with: "port: 0")
        #expect(issues(instance) == ["web.yaml:11: resources[0].port: 0 is out of range 1..65535"])

        let ipv6 = ConfigFixtures.sidecar().replacingOccurrences(of: "127.0.0.1:8080", with: #""::1:8080""#)
        #expect(issues(ipv6) == [
            #"web.yaml:2: inbound.app: "::1:8080" needs brackets around an IPv6 address, as in [::1]:8080"#
        ])
    }

    @Test func invalidYAMLSyntaxIsOneIssueWithItsLine() {
        let yaml = ConfigFixtures.sidecar("admin: listen: 127.0.0.1:15000\n")
        let found = issues(yaml)
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("web.yaml:4: invalid YAML: mapping values are not allowed") == true, "\(found)")

        let unclosed = "service: web\ninbound: { app: 127.0.0.1:8080\ntls: {}\n"
        #expect(issues(unclosed) == [
            "web.yaml:3: invalid YAML: did not find expected ',' or '}' while parsing a flow mapping started at line 2"
        ])

        let duplicateKey = ConfigFixtures.sidecar("service: api\n")
        #expect(issues(duplicateKey).first?.contains(#"duplicate key "service""#) == true)
    }

    @Test func twoListenersOnOneAddress() {
        let yaml = ConfigFixtures.sidecar("admin: { listen: 0.0.0.0:15006 }\n")
        #expect(issues(yaml) == ["web.yaml:4: admin.listen: 0.0.0.0:15006 is already used by inbound.listen"])
    }

    @Test func controlPlaneAddressMustBeHTTPS() {
        let yaml = "service: web\ninbound: { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }\ncontrolPlane: { address: http://cp:15010, tokenFile: t, caFile: c }\n"
        #expect(issues(yaml) == [
            #"web.yaml:3: controlPlane.address: "http://cp:15010" is not a control plane address (https://host:port)"#
        ])
    }

    @Test func controlPlaneAddressMayListReplicasEachOfThemHTTPS() throws {
        let replicas = "service: web\ninbound: { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }\n"
            + "controlPlane: { address: [ https://cp-a:15010, https://cp-b:15010 ], tokenFile: t, caFile: c }\n"
        let config = try SidecarConfiguration.decode(yaml: replicas, fileName: "web.yaml")
        #expect(config.controlPlane?.addresses == ["https://cp-a:15010", "https://cp-b:15010"])
        #expect(config.controlPlane?.address == "https://cp-a:15010")
        // Encoded back as the same list.
        let again = try SidecarConfiguration.decode(yaml: config.configValue.yaml, fileName: "web.yaml")
        #expect(again.controlPlane?.addresses == config.controlPlane?.addresses)

        let oneBad = "service: web\ninbound: { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }\n"
            + "controlPlane: { address: [ https://cp-a:15010, http://cp-b:15010 ], tokenFile: t, caFile: c }\n"
        #expect(issues(oneBad) == [
            #"web.yaml:3: controlPlane.address[1]: "http://cp-b:15010" is not a control plane address (https://host:port)"#
        ])
        let none = "service: web\ninbound: { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }\ncontrolPlane: { address: [], tokenFile: t, caFile: c }\n"
        #expect(issues(none) == ["web.yaml:3: controlPlane.address: give at least one control plane address (https://host:port)"])
    }

    @Test func dynamicModeNeedsTheCAOneIdentitySourceAndADiallableAddress() {
        let missingCA = "service: web\ninbound: { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }\ncontrolPlane: { address: https://cp:15010, tokenFile: t }\n"
        #expect(issues(missingCA) == ["web.yaml:3: controlPlane.caFile: is required"])

        let both = ConfigFixtures.sidecar("controlPlane: { address: https://cp:15010, tokenFile: t, caFile: c, advertise: 10.0.0.1:15006 }\n")
        #expect(issues(both).count == 1)
        #expect(issues(both).first?.contains("give either tls (static mode) or controlPlane (dynamic mode), not both") == true, "\(issues(both))")

        let everyInterface = "service: web\ninbound: { listen: 0.0.0.0:15006, app: 127.0.0.1:8080 }\ncontrolPlane: { address: https://cp:15010, tokenFile: t, caFile: c }\n"
        #expect(issues(everyInterface) == [
            "web.yaml:3: controlPlane: inbound.listen is 0.0.0.0:15006: set controlPlane.advertise to the host:port other sidecars dial to reach this one"
        ])

        let portZero = "service: web\ninbound: { app: 127.0.0.1:8080 }\ncontrolPlane: { address: https://cp:15010, tokenFile: t, caFile: c, advertise: 10.0.0.1:0 }\n"
        #expect(issues(portZero) == [
            "web.yaml:3: controlPlane.advertise: 10.0.0.1:0 cannot be dialled by other sidecars (give a routable address and a port)"
        ])
    }

    @Test func emptyOrNonMappingDocument() {
        #expect(issues("") == ["web.yaml: the file is empty; it needs at least service, inbound and tls or controlPlane"])
        #expect(issues("- a\n- b\n") == ["web.yaml:1: expected a mapping, got a list"])
    }

    @Test func duplicateResourceNamesAndASecondRouteForOneService() {
        let yaml = ConfigFixtures.sidecar("""
            resources:
              - { kind: Instance, service: payments, address: 127.0.0.1, port: 16006 }
              - { kind: Instance, service: payments, address: 127.0.0.1, port: 16006 }
              - { kind: Route, service: payments, rules: [ {} ] }
              - { kind: Route, name: payments-canary, service: payments, rules: [ {} ] }

            """)
        #expect(issues(yaml) == [
            #"web.yaml:6: resources[1]: duplicate Instance name "payments-127.0.0.1-16006" (first in resources[0])"#,
            #"web.yaml:8: resources[3]: a second Route for service "payments" (first in resources[2]); merge their rules into one"#,
        ])
    }

    @Test func severalErrorsAreReportedTogetherInDocumentOrder() {
        let yaml = """
            service: Web
            inbound: { app: 127.0.0.1:8080, protocol: quic }
            tls: { cert: web.pem, key: web.key }
            resources:
              - kind: Route
                service: payments
                rules:
                  - backends: [ { subset: { version: v1 }, weight: 0 } ]
                    retries: { attempts: 0, retryOn: [ teapot ] }
                    fault: { abort: { percent: 150, status: 700 } }
                    match: { method: get }
              - kind: TrafficPolicy
                service: payments
                loadBalancer: random
              - kind: Gateway
                service: payments

            """
        #expect(issues(yaml) == [
            #"web.yaml:1: service: "Web" is not a valid service name (lowercase letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters)"#,
            #"web.yaml:2: inbound.protocol: "quic" is not one of: http, http2, grpc, tcp"#,
            "web.yaml:3: tls.trustBundle: is required",
            #"web.yaml:11: resources[0].rules[0].match.method: "get" is not an HTTP method (upper case, e.g. GET)"#,
            "web.yaml:8: resources[0].rules[0].backends: weights must add up to more than 0",
            "web.yaml:9: resources[0].rules[0].retries.attempts: 0 is out of range 1..10",
            #"web.yaml:9: resources[0].rules[0].retries.retryOn[0]: "teapot" is not a retry condition (one of: connect-failure, reset, refused-stream, 5xx, gateway-error, unavailable, resource-exhausted, cancelled, deadline-exceeded, or a status code 100–599)"#,
            "web.yaml:10: resources[0].rules[0].fault.abort.percent: 150 is out of range 0–100 (a percent)",
            "web.yaml:10: resources[0].rules[0].fault.abort.status: 700 is out of range 100..599",
            #"web.yaml:14: resources[1].loadBalancer: "random" is not one of: leastRequest, roundRobin, ewma"#,
            #"web.yaml:15: resources[2].kind: "Gateway" is not a resource kind (one of: Service, Instance, Route, TrafficPolicy, AuthorizationPolicy, GatewayRoute, AuthenticationPolicy)"#,
        ])
    }

    @Test func issueCarriesFileLineColumnAndPath() throws {
        let yaml = ConfigFixtures.webYAML.replacingOccurrences(of: "timeout: 2s", with: "timeout: 2x")
        let error = #expect(throws: ConfigError.self) {
            try SidecarConfiguration.decode(yaml: yaml, fileName: "web.yaml")
        }
        let issue = try #require(error?.issues.first)
        #expect(issue.file == "web.yaml")
        #expect(issue.line == 17)
        #expect(issue.column == 18)
        #expect(issue.path == "resources[1].rules[0].timeout")
    }
}
