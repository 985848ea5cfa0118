import Foundation
import MeshTestSupport
import Testing

@testable import SidecarCore

/// `promtool check metrics` accepts our exposition: every family with series, escaping-worthy
/// label values, histograms. promtool comes from PATH or `.build-tools/promtool`
/// (scripts/install-deps.sh puts it there); without it this test fails rather than skips.
@Suite struct PromtoolTests {
    static func promtoolPath() -> String? {
        let pathEntries = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        for entry in pathEntries {
            let candidate = "\(entry)/promtool"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        // #filePath is <root>/Tests/SidecarCoreTests/Metrics/PromtoolTests.swift.
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let local = root.appendingPathComponent(".build-tools/promtool").path
        return FileManager.default.isExecutableFile(atPath: local) ? local : nil
    }

    static func check(_ exposition: String) async throws -> (status: Int32, output: String) {
        let promtool = try #require(
            promtoolPath(), "promtool not found on PATH or in .build-tools/: run scripts/install-deps.sh")
        let result = try await ChildProcess.run([promtool, "check", "metrics"], input: exposition)
        return (result.status, result.stdout + result.stderr)
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
        metrics.authzDenied(caller: "web").increment()
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

    @Test func controlPlaneAndEmptyExpositionsPassPromtool() async throws {
        let metrics = ControlPlaneMetrics()
        metrics.instances(service: "payments", health: "healthy").set(2)
        metrics.apiRequests(route: "/v1/resources/{kind}", code: 409).increment()
        metrics.pushDurationHistogram.observe(.milliseconds(2))
        for text in [metrics.registry.text, SidecarMetrics().registry.text] {
            let (status, output) = try await Self.check(text)
            #expect(status == 0, "promtool: \(output)\n\(text)")
            #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(output)")
        }
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
