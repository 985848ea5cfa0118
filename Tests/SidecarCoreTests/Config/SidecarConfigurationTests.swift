import Foundation
import Testing
@testable import SidecarCore

@Suite struct SidecarConfigurationTests {
    @Test func webExampleLoadsWithItsValuesAndDefaults() throws {
        let config = try SidecarConfiguration.decode(yaml: ConfigFixtures.webYAML, fileName: "web.yaml")
        #expect(config.service == "web")
        #expect(config.inbound.listen == HostPort(host: "127.0.0.1", port: 15006))
        #expect(config.inbound.app == HostPort(host: "127.0.0.1", port: 8080))
        #expect(config.inbound.appProtocol == .http)
        #expect(config.outbound == .init(listen: HostPort(host: "127.0.0.1", port: 15001), tcp: []))
        #expect(config.adminListen == HostPort(host: "127.0.0.1", port: 15000))
        #expect(config.trustDomain == "mesh.local")
        #expect(config.spiffeID == "spiffe://mesh.local/service/web")
        #expect(config.tls == .init(certificate: "certs/web.pem", privateKey: "certs/web.key", trustBundle: "certs/ca.pem"))
        #expect(config.controlPlane == nil)

        #expect(config.resources.count == 2)
        let instance = Instance(service: "payments", address: "127.0.0.1", port: 16006, labels: ["version": "v1"])
        #expect(config.resources[0] == .instance(instance))
        #expect(instance.name == "payments-127.0.0.1-16006")
        #expect(instance.health == .healthy)

        guard case .route(let route) = config.resources[1] else {
            Issue.record("expected a Route, got \(config.resources[1])")
            return
        }
        #expect(route.name == "payments")
        #expect(route.rules.count == 1)
        let rule = route.rules[0]
        #expect(rule.match == RouteMatch(path: .prefix("/pay")))
        #expect(rule.timeout == .seconds(2))
        #expect(rule.retries.attempts == 3)
        #expect(rule.retries.perTryTimeout == .milliseconds(500))
        // Omitted retry fields keep the documented defaults.
        #expect(rule.retries.retryOn == [.connectFailure, .reset, .status(503)])
        #expect(rule.retries.backoff == RetryBackoff(base: .milliseconds(25), max: .milliseconds(250)))
        #expect(rule.backends == [WeightedBackend(subset: ["version": "v1"], weight: 100)])
        #expect(rule.requestHeaders.isEmpty && rule.responseHeaders.isEmpty)
        #expect(rule.fault == nil && rule.mirror == nil && rule.rateLimit == nil)
    }

    @Test func paymentsExampleLoads() throws {
        let config = try SidecarConfiguration.decode(yaml: ConfigFixtures.paymentsYAML, fileName: "payments.yaml")
        #expect(config.service == "payments")
        #expect(config.inbound.listen.port == 16006)
        #expect(config.inbound.app.port == 9090)
        #expect(config.outbound.listen.port == 16001)
        #expect(config.adminListen.port == 16000)
        let policy = AuthorizationPolicy(
            service: "payments", defaultAction: .deny,
            allow: [.init(from: ["web"], methods: ["GET", "POST"], pathPrefix: "/pay")])
        #expect(config.resources == [.authorizationPolicy(policy)])
    }

    @Test func omittedListenersUseTheDefaultPorts() throws {
        let config = try SidecarConfiguration.decode(yaml: ConfigFixtures.sidecar())
        #expect(config.inbound.listen.description == "0.0.0.0:15006")
        #expect(config.outbound.listen.description == "127.0.0.1:15001")
        #expect(config.adminListen.description == "127.0.0.1:15000")
        #expect(config.resources.isEmpty)
    }

    @Test func dynamicModeAndTCPUpstreamsAndIPv6() throws {
        let yaml = """
            service: web
            inbound: { listen: "[::]:15006", app: "[::1]:8080", protocol: http2 }
            outbound: { tcp: [ { listen: 127.0.0.1:15432, service: db } ] }
            trustDomain: prod.example
            controlPlane:
              address: https://127.0.0.1:15010
              tokenFile: web.token
              caFile: /etc/mesh/ca.pem
              advertise: 10.0.0.7:15006
              labels: { version: v2 }
              dependencies: [ payments ]
            """
        let config = try SidecarConfiguration.decode(yaml: yaml, fileName: "web.yaml", baseDirectory: "/etc/mesh")
        #expect(config.inbound.listen == HostPort(host: "::", port: 15006))
        #expect(config.inbound.app.description == "[::1]:8080")
        #expect(config.inbound.appProtocol == .http2)
        #expect(config.outbound.tcp == [.init(listen: HostPort(host: "127.0.0.1", port: 15432), service: "db")])
        #expect(config.controlPlane == .init(
            address: "https://127.0.0.1:15010", tokenFile: "/etc/mesh/web.token", caFile: "/etc/mesh/ca.pem",
            advertise: HostPort(host: "10.0.0.7", port: 15006), labels: ["version": "v2"], dependencies: ["payments"],
            stateDirectory: "/etc/mesh/sidecar-state"))
        // What /config shows decodes back to the same configuration.
        #expect(try SidecarConfiguration.decode(yaml: config.yaml) == config)
        // controlPlane.stateDir: relative to the config file's directory, like every path.
        let stateDir = yaml.replacingOccurrences(of: "dependencies: [ payments ]", with: "stateDir: state/web")
        #expect(try SidecarConfiguration.decode(yaml: stateDir, fileName: "web.yaml", baseDirectory: "/etc/mesh")
            .controlPlane?.stateDirectory == "/etc/mesh/state/web")
        #expect(config.spiffeID == "spiffe://prod.example/service/web")
    }

    @Test func relativePathsResolveAgainstTheConfigFilesDirectory() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mesh-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let yaml = """
            service: web
            inbound: { app: 127.0.0.1:8080 }
            tls: { cert: certs/web.pem, key: ./certs/web.key, trustBundle: /etc/mesh/ca.pem }
            """
        let path = directory + "/web.yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)

        let config = try SidecarConfiguration.load(contentsOf: path)
        #expect(config.tls?.certificate == directory + "/certs/web.pem")
        #expect(config.tls?.privateKey == directory + "/certs/web.key")
        #expect(config.tls?.trustBundle == "/etc/mesh/ca.pem")
    }

    @Test func aMissingFileIsAConfigError() {
        #expect(throws: ConfigError.self) {
            try SidecarConfiguration.load(contentsOf: "/nonexistent/mesh/web.yaml")
        }
    }
}

@Suite struct SidecarConfigurationEncodingTests {
    @Test func yamlAndJSONRoundTrip() throws {
        let config = try SidecarConfiguration.decode(yaml: ConfigFixtures.webYAML, fileName: "web.yaml", baseDirectory: "/etc/mesh")
        #expect(config.tls?.certificate == "/etc/mesh/certs/web.pem")
        #expect(try SidecarConfiguration.decode(yaml: config.yaml) == config)
        #expect(try SidecarConfiguration.decode(yaml: config.json) == config)
        #expect(config.json.hasPrefix(#"{"service":"web","inbound":{"listen":"127.0.0.1:15006","app":"127.0.0.1:8080","protocol":"http"}"#))
    }
}

/// `tracing:`: the OTLP/HTTP endpoint (path defaulted as OTLP's base endpoint), sampling, the
/// errors naming the key, and the round trip through `/config`.
@Suite struct SidecarTracingConfigurationTests {
    @Test func theEndpointGetsV1TracesUnlessItNamesAPath() throws {
        let plain = try SidecarConfiguration.decode(yaml: ConfigFixtures.sidecar(
            "tracing: { otlpEndpoint: http://127.0.0.1:4318 }\n"))
        #expect(plain.tracing == .init(endpoint: HostPort(host: "127.0.0.1", port: 4318), path: "/v1/traces", sampling: 100))
        let custom = try SidecarConfiguration.decode(yaml: ConfigFixtures.sidecar(
            "tracing: { otlpEndpoint: \"http://collector.local:4318/otlp/v1/traces\", sampling: 12.5 }\n"))
        #expect(custom.tracing == .init(endpoint: HostPort(host: "collector.local", port: 4318), path: "/otlp/v1/traces", sampling: 12.5))
        #expect(try SidecarConfiguration.decode(yaml: custom.yaml) == custom)
        #expect(try SidecarConfiguration.decode(yaml: custom.json) == custom)
        #expect(try SidecarConfiguration.decode(yaml: ConfigFixtures.sidecar()).tracing == nil)
    }

    @Test(arguments: [
        ("tracing: { otlpEndpoint: https://127.0.0.1:4318 }", "tracing.otlpEndpoint: \"https://127.0.0.1:4318\" uses https"),
        ("tracing: { otlpEndpoint: 127.0.0.1:4318 }", "tracing.otlpEndpoint: \"127.0.0.1:4318\" needs http://host:port"),
        ("tracing: { otlpEndpoint: http://127.0.0.1 }", "tracing.otlpEndpoint: \"http://127.0.0.1\" needs a port"),
        ("tracing: { otlpEndpoint: http://127.0.0.1:0 }", "tracing.otlpEndpoint: \"http://127.0.0.1:0\" needs a port other than 0"),
        ("tracing: { sampling: 10 }", "tracing.otlpEndpoint: is required"),
        ("tracing: { otlpEndpoint: http://127.0.0.1:4318, sampling: 150 }", "tracing.sampling: 150 is out of range"),
        ("tracing: { otlpEndpoint: http://127.0.0.1:4318, sample: 10 }", "tracing.sample"),
    ])
    func aBadTracingBlockNamesTheKey(_ yaml: String, _ expected: String) {
        do {
            _ = try SidecarConfiguration.decode(yaml: ConfigFixtures.sidecar(yaml + "\n"), fileName: "web.yaml")
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
        }
    }
}
