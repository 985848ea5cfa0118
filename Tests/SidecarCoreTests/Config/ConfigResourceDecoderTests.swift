import Foundation
import Testing
@testable import SidecarCore

/// `control-plane apply -f FILE.yaml`: multi-document input, every kind, and its errors.
@Suite struct ConfigResourceDecoderTests {
    func issues(_ yaml: String) -> [String] {
        do {
            let resources = try MeshResourceDecoder.decodeDocuments(yaml: yaml, fileName: "apply.yaml")
            Issue.record("expected errors, decoded \(resources)")
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func designExampleDecodesEveryKind() throws {
        let resources = try MeshResourceDecoder.decodeDocuments(yaml: ConfigFixtures.resourcesYAML, fileName: "apply.yaml")
        #expect(resources.map(\.kind) == [.route, .trafficPolicy, .authorizationPolicy, .instance, .service])
        #expect(resources.map(\.name) == ["payments", "payments", "payments", "payments-127.0.0.1-16006", "payments"])

        let rule = RouteRule(
            match: RouteMatch(path: .prefix("/pay"), method: "POST", headers: ["x-canary": "1"]),
            backends: [.init(subset: ["version": "v1"], weight: 90), .init(subset: ["version": "v2"], weight: 10)],
            timeout: .seconds(2),
            retries: RetryPolicy(
                attempts: 3, perTryTimeout: .milliseconds(500), retryOn: [.connectFailure, .reset, .status(503)],
                backoff: RetryBackoff(base: .milliseconds(25), max: .milliseconds(250))),
            requestHeaders: HeaderRewrite(set: ["x-env": "prod"], remove: ["x-debug"]),
            responseHeaders: HeaderRewrite(),
            fault: FaultInjection(delay: .init(percent: 10, duration: .milliseconds(100)), abort: .init(percent: 5, status: 503)),
            mirror: TrafficMirror(subset: ["version": "v2"], percent: 10),
            rateLimit: RateLimit(requestsPerSecond: 50, burst: 50))
        #expect(resources[0] == .route(Route(service: "payments", rules: [rule])))

        var policy = TrafficPolicy.default(service: "payments")
        policy.rateLimit = RateLimit(requestsPerSecond: 100, burst: 100, perCaller: false)
        policy.fallback = FallbackResponse(
            status: 200, headers: ["content-type": "application/json"], body: #"{"degraded":true}"#)
        #expect(resources[1] == .trafficPolicy(policy))
        // The example spells out the defaults, so it equals the default policy plus its extras.
        #expect(policy.loadBalancer == .leastRequest)
        #expect(policy.connectTimeout == .seconds(5))
        #expect(policy.circuitBreaker == .init(maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3))
        #expect(policy.outlierDetection == .init(
            consecutive5xx: 5, consecutiveGatewayErrors: 5, interval: .seconds(10),
            baseEjectionTime: .seconds(30), maxEjectionPercent: 10))
        #expect(policy.retryBudget == .init(percent: 20, minPerSecond: 10))

        #expect(resources[2] == .authorizationPolicy(AuthorizationPolicy(
            service: "payments", defaultAction: .deny,
            allow: [.init(from: ["web"], methods: ["GET", "POST"], pathPrefix: "/pay")])))
        #expect(resources[3] == .instance(Instance(service: "payments", address: "127.0.0.1", port: 16006, labels: ["version": "v1"])))
        #expect(resources[4] == .service(MeshService(name: "payments", appProtocol: .http)))
    }

    @Test func minimalResourcesGetTheDocumentedDefaults() throws {
        let yaml = """
            kind: Route
            service: payments
            rules: [ {} ]
            ---
            kind: TrafficPolicy
            service: payments
            ---
            kind: AuthorizationPolicy
            service: payments
            ---
            kind: Instance
            service: payments
            address: "::1"
            port: 16006
            ttl: 30s
            health: unhealthy
            """
        let resources = try MeshResourceDecoder.decodeDocuments(yaml: yaml)
        guard case .route(let route) = resources[0] else { Issue.record("not a route"); return }
        #expect(route.rules == [RouteRule()])
        #expect(route.rules[0].timeout == .seconds(15))
        #expect(route.rules[0].match.path == .prefix("/"))
        #expect(route.rules[0].backends == [WeightedBackend(subset: [:], weight: 100)])
        #expect(route.rules[0].retries == RetryPolicy(
            attempts: 2, perTryTimeout: nil, retryOn: [.connectFailure, .reset, .status(503)],
            backoff: RetryBackoff(base: .milliseconds(25), max: .milliseconds(250))))
        #expect(resources[1] == .trafficPolicy(.default(service: "payments")))
        #expect(resources[2] == .authorizationPolicy(AuthorizationPolicy(service: "payments", defaultAction: .deny, allow: [])))
        #expect(resources[3] == .instance(Instance(
            name: "payments-::1-16006", service: "payments", address: "::1", port: 16006, health: .unhealthy, ttl: .seconds(30))))
    }

    @Test func issuePathsStartWithTheDocument() {
        let yaml = ConfigFixtures.resourcesYAML.replacingOccurrences(of: "interval: 10s", with: "interval: 10")
            .replacingOccurrences(of: "timeout: 2s", with: "timeout: 2x")
        #expect(issues(yaml) == [
            #"apply.yaml:6: document 1 (Route payments): rules[0].timeout: "2x" is not a duration (use 250ms, 2s, 1m)"#,
            #"apply.yaml:18: document 2 (TrafficPolicy payments): outlierDetection.interval: "10" is not a duration (use 250ms, 2s, 1m)"#,
        ])
    }

    @Test func unknownKindSuggestsTheSpelling() {
        #expect(issues("kind: route\nservice: payments\nrules: [ {} ]\n") == [
            #"apply.yaml:1: document 1 (route payments): kind: "route" is not a resource kind (did you mean "Route"?)"#
        ])
        #expect(issues("service: payments\n") == ["apply.yaml:1: document 1: kind: is required"])
    }

    @Test func rangeAndShapeRules() {
        let yaml = """
            kind: Route
            service: payments
            rules:
              - match: { path: /a, pathPrefix: /b }
                backends: []
                retries: { backoff: { base: 1s, max: 100ms } }
                mirror: { percent: -5 }
                rateLimit: { burst: 0, perCaller: true }
                timeout: 0s
            """
        #expect(issues(yaml) == [
            "apply.yaml:4: document 1 (Route payments): rules[0].match: set either path or pathPrefix, not both",
            "apply.yaml:5: document 1 (Route payments): rules[0].backends: needs at least one backend",
            "apply.yaml:9: document 1 (Route payments): rules[0].timeout: must be longer than 0s",
            "apply.yaml:6: document 1 (Route payments): rules[0].retries.backoff.max: max (100ms) is shorter than base (1s)",
            "apply.yaml:7: document 1 (Route payments): rules[0].mirror.percent: -5 is out of range 0–100 (a percent)",
            "apply.yaml:8: document 1 (Route payments): rules[0].rateLimit.requestsPerSecond: is required",
            "apply.yaml:8: document 1 (Route payments): rules[0].rateLimit.burst: 0 is below the minimum of 1",
            #"apply.yaml:8: document 1 (Route payments): rules[0].rateLimit.perCaller: unknown key (allowed: requestsPerSecond, burst)"#,
        ])
    }

    @Test func duplicatesAcrossDocuments() {
        let yaml = """
            kind: Service
            name: payments
            ---
            kind: Service
            name: payments
            protocol: tcp
            """
        #expect(issues(yaml) == [
            #"apply.yaml:4: document 2 (Service payments): duplicate Service name "payments" (first in document 1 (Service payments))"#
        ])
    }

    @Test func syntaxErrorInALaterDocumentHasItsLine() {
        let yaml = "kind: Service\nname: a\n---\nkind: Service\nname: [b\n"
        let found = issues(yaml)
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("apply.yaml:") == true && found.first?.contains("invalid YAML") == true, "\(found)")
        #expect((found.first?.split(separator: ":")[1]).flatMap { Int($0) }.map { $0 >= 5 } == true, "\(found)")
    }

    @Test func aliasBombIsRefusedNotWalked() {
        var yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 {
            let refs = Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ")
            yaml += "a\(level): &a\(level) [\(refs)]\n"
        }
        #expect(issues(yaml) == ["apply.yaml:1: document too large: more than 200000 values (after expanding aliases)"])
    }

    @Test func emptyDocumentsAreSkipped() throws {
        let resources = try MeshResourceDecoder.decodeDocuments(yaml: "---\n# nothing\n---\nkind: Service\nname: a\n---\n")
        #expect(resources == [.service(MeshService(name: "a"))])
    }

    @Test func kindWordsFromTheCommandLine() {
        #expect(ResourceKind(word: "routes") == .route)
        #expect(ResourceKind(word: "Route") == .route)
        #expect(ResourceKind(word: "trafficpolicies") == .trafficPolicy)
        #expect(ResourceKind(word: "AuthorizationPolicy") == .authorizationPolicy)
        #expect(ResourceKind(word: "instance") == .instance)
        #expect(ResourceKind(word: "gateway") == nil)
    }
}
