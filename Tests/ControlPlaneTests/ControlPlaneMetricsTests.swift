import ControlPlane
import MeshTestSupport
import Testing

/// The control plane's declared families (DESIGN.md, "Metrics"), their series, and a
/// promtool-clean exposition.
@Suite struct ControlPlaneMetricsTests {
    @Test func everyDesignedFamilyIsDeclared() {
        let names = Set(ControlPlaneMetrics().registry.families.map(\.descriptor.name))
        #expect(names == [
            "control_plane_instances", "control_plane_watchers", "control_plane_push_duration_seconds",
            "control_plane_certificates_issued_total", "control_plane_api_requests_total",
        ])
    }

    @Test func seriesMove() {
        let metrics = ControlPlaneMetrics()
        metrics.instances(service: "payments", health: "healthy").set(2)
        metrics.watcherCount.set(5)
        metrics.pushDurationHistogram.observe(.milliseconds(3))
        metrics.certificatesIssuedCount.increment()
        metrics.apiRequests(route: "/v1/resources/{kind}", code: 200).increment()
        let text = metrics.registry.text
        #expect(text.contains(#"control_plane_instances{service="payments",health="healthy"} 2"#))
        #expect(text.contains("control_plane_watchers 5\n"))
        #expect(text.contains("control_plane_push_duration_seconds_count 1\n"))
        #expect(text.contains("control_plane_certificates_issued_total 1\n"))
        #expect(text.contains(#"control_plane_api_requests_total{route="/v1/resources/{kind}",code="200"} 1"#))
    }

    @Test func expositionPassesPromtool() async throws {
        let metrics = ControlPlaneMetrics()
        metrics.instances(service: "payments", health: "healthy").set(2)
        metrics.apiRequests(route: "/v1/resources/{kind}", code: 409).increment()
        metrics.pushDurationHistogram.observe(.milliseconds(2))
        let text = metrics.registry.text
        let (status, output) = try await Promtool.check(text)
        #expect(status == 0, "promtool: \(output)\n\(text)")
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(output)")
    }
}
