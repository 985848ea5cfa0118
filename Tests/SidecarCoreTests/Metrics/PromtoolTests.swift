import Foundation
import MeshTestSupport
import Testing

@testable import SidecarCore

/// `promtool check metrics` accepts our exposition: every family with series, escaping-worthy
/// label values, histograms (`Promtool` fails rather than skips without promtool). The control
/// plane's exposition is checked in ControlPlaneMetricsTests.
@Suite struct PromtoolTests {
    static func check(_ exposition: String) async throws -> (status: Int32, output: String) {
        try await Promtool.check(exposition)
    }

    @Test func populatedSidecarExpositionPassesPromtool() async throws {
        let metrics = SidecarMetrics()
        let outbound = metrics.requests.handle(direction: .outbound, peer: "payments")
        outbound.record(status: 200, durationNanos: 1_200_000, requestBytes: 120, responseBytes: 4_000)
        outbound.record(status: 503, durationNanos: 31_000_000_000)
        let odd = metrics.requests.handle(direction: .inbound, peer: "we\"ird\\peer\nname")
        odd.record(status: 204, durationNanos: 0)
        let payments = metrics.peer("payments")
        payments.circuitBreakerOpen.set(true)
        payments.circuitBreakerRejections.increment()
        payments.outlierEjections.increment()
        payments.retryBudgetExhausted.increment()
        payments.endpoints(.healthy).set(2)
        metrics.retries(peer: "payments", reason: "reset").increment()
        metrics.mirrorRequests(peer: "payments", result: .completed).increment()
        metrics.grpcResponses(.outbound, peer: "payments", status: .unavailable).increment()
        metrics.authzDenied(caller: "web").increment()
        metrics.gatewayAuthFailures(policy: "jwt-main", reason: .expired).increment()
        metrics.cacheRequests(route: "api", result: .hit).increment()
        metrics.connectionsOpen(.outbound).set(3)
        metrics.tlsHandshakeErrors(.inbound, .untrustedIssuer).increment()
        metrics.certificateExpiry.set(1_900_000_000)
        metrics.configurationVersion.set(12)
        metrics.controlPlaneConnection.set(true)

        let text = metrics.registry.text
        for family in metrics.registry.families {
            #expect(text.contains("\n\(family.descriptor.name)") || text.hasPrefix(family.descriptor.name),
                    "\(family.descriptor.name) has no series")
        }
        let (status, output) = try await Self.check(text)
        #expect(status == 0, "promtool: \(output)\n\(text)")
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(output)")
    }

    @Test func emptySidecarExpositionPassesPromtool() async throws {
        let text = SidecarMetrics().registry.text
        let (status, output) = try await Self.check(text)
        #expect(status == 0, "promtool: \(output)\n\(text)")
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(output)")
    }
}

/// The check above can fail: promtool does complain about a family without HELP text.
@Suite struct PromtoolHarnessTests {
    @Test func promtoolRejectsALintProblem() async throws {
        let (status, output) = try await PromtoolTests.check("# TYPE demo gauge\ndemo 1\n")
        #expect(status != 0)
        #expect(output.contains("no help text"))
    }
}
