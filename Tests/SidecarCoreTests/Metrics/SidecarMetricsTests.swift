import NIOCore
import Testing

@testable import SidecarCore

/// The sidecar's declared families: names, per-status series, pre-made series, handles.
@Suite struct SidecarMetricsTests {
    @Test func everyDesignedFamilyIsDeclared() {
        let names = Set(SidecarMetrics().registry.families.map(\.descriptor.name))
        #expect(names == [
            "sidecar_requests_total", "sidecar_request_duration_seconds", "sidecar_retries_total",
            "sidecar_retry_budget_exhausted_total", "sidecar_circuit_breaker_open",
            "sidecar_circuit_breaker_rejections_total", "sidecar_outlier_ejections_total", "sidecar_endpoints",
            "sidecar_connections_open", "sidecar_bytes_total", "sidecar_tls_handshake_errors_total",
            "sidecar_authz_denied_total", "sidecar_cert_expiry_timestamp_seconds", "sidecar_config_version",
            "sidecar_config_rejected_total", "sidecar_control_plane_connected",
            // README, additions to the original design:
            "sidecar_mirror_requests_total", "sidecar_spans_exported_total", "sidecar_spans_dropped_total",
            "sidecar_intercepted_connections_total",
            "sidecar_grpc_responses_total",
            // DESIGN.md "Gateway":
            "sidecar_gateway_auth_failures_total", "sidecar_cache_requests_total",
        ])
    }

    @Test func onlyTouchedStatusCodesAppear() {
        let metrics = SidecarMetrics()
        let handle = metrics.requests.handle(direction: .inbound, peer: "web")
        #expect(metrics.requests.handle(direction: .inbound, peer: "web") === handle)
        handle.record(status: 200, durationNanos: 1_000_000, requestBytes: 10, responseBytes: 100)
        handle.record(status: 200, durationNanos: 2_000_000)
        handle.record(status: 404, durationNanos: 3_000_000)
        handle.record(status: 999, durationNanos: 3_000_000)
        let text = metrics.registry.text
        let requestLines = text.split(separator: "\n").filter { $0.hasPrefix("sidecar_requests_total{") }
        #expect(requestLines == [
            #"sidecar_requests_total{direction="inbound",peer="web",code="200"} 2"#,
            #"sidecar_requests_total{direction="inbound",peer="web",code="404"} 1"#,
            #"sidecar_requests_total{direction="inbound",peer="web",code="other"} 1"#,
        ])
        #expect(text.contains(#"sidecar_bytes_total{direction="inbound",peer="web",flow="request"} 10"#))
        #expect(text.contains(#"sidecar_bytes_total{direction="inbound",peer="web",flow="response"} 100"#))
        #expect(text.contains(#"sidecar_request_duration_seconds_bucket{direction="inbound",peer="web",le="0.001"} 1"#))
        #expect(text.contains(#"sidecar_request_duration_seconds_count{direction="inbound",peer="web"} 4"#))
        #expect(text.contains(#"sidecar_request_duration_seconds_sum{direction="inbound",peer="web"} 0.009"#))
    }

    @Test func peerAndProcessSeriesMove() {
        let metrics = SidecarMetrics()
        let payments = metrics.peer("payments")
        payments.circuitBreakerOpen.set(true)
        payments.circuitBreakerRejections.add(2)
        payments.outlierEjections.increment()
        payments.retryBudgetExhausted.increment()
        payments.endpoints(.healthy).set(3)
        payments.endpoints(.ejected).set(1)
        metrics.retries(peer: "payments", reason: "connect-failure").add(4)
        metrics.authzDenied(caller: "web").increment()
        metrics.connectionsOpen(.inbound).increment()
        metrics.tlsHandshakeErrors(.inbound, .expired).increment()
        metrics.certificateExpiry.set(1_900_000_000)
        metrics.configurationVersion.set(7)
        metrics.controlPlaneConnection.set(true)

        let lines = Set(metrics.registry.text.split(separator: "\n").map(String.init))
        for expected in [
            #"sidecar_circuit_breaker_open{peer="payments"} 1"#,
            #"sidecar_circuit_breaker_rejections_total{peer="payments"} 2"#,
            #"sidecar_outlier_ejections_total{peer="payments"} 1"#,
            #"sidecar_retry_budget_exhausted_total{peer="payments"} 1"#,
            #"sidecar_endpoints{peer="payments",state="healthy"} 3"#,
            #"sidecar_endpoints{peer="payments",state="unhealthy"} 0"#,
            #"sidecar_endpoints{peer="payments",state="ejected"} 1"#,
            #"sidecar_retries_total{peer="payments",reason="connect-failure"} 4"#,
            #"sidecar_authz_denied_total{peer="web"} 1"#,
            #"sidecar_connections_open{direction="inbound"} 1"#,
            #"sidecar_connections_open{direction="outbound"} 0"#,
            #"sidecar_tls_handshake_errors_total{direction="inbound",reason="expired"} 1"#,
            #"sidecar_tls_handshake_errors_total{direction="outbound",reason="not-tls"} 0"#,
            "sidecar_cert_expiry_timestamp_seconds 1900000000",
            "sidecar_config_version 7",
            "sidecar_control_plane_connected 1",
        ] {
            #expect(lines.contains(expected), "missing \(expected)")
        }
    }

    @Test func everyTLSFailureReasonHasASeriesPerDirection() {
        let text = SidecarMetrics().registry.text
        for direction in TrafficDirection.allCases {
            for reason in TLSFailureReason.allCases {
                #expect(text.contains(
                    #"sidecar_tls_handshake_errors_total{direction="\#(direction.rawValue)",reason="\#(reason.rawValue)"} 0"#))
            }
        }
    }
}

/// A static sidecar has no control plane: its /metrics does not carry the connection gauge
/// (a constant 0 would read as "disconnected" and fire MeshSidecarDisconnectedFromControlPlane).
@Suite struct SidecarMetricsModeTests {
    @Test func staticModeDoesNotExportTheControlPlaneConnection() {
        let text = SidecarMetrics(mode: .static).registry.text
        #expect(!text.contains("sidecar_control_plane_connected"), "\(text)")
        #expect(text.contains("sidecar_config_version 0"))
        let dynamic = SidecarMetrics(mode: .dynamic).registry.text
        #expect(dynamic.contains("# TYPE sidecar_control_plane_connected gauge\nsidecar_control_plane_connected 0\n"), "\(dynamic)")
    }
}
