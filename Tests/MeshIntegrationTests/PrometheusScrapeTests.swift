import Foundation
import MeshTestSupport
import Testing

/// A real Prometheus (Debian's, from PATH or `.build-tools/`) scrapes two dynamic sidecars and
/// the control plane, as the demo and deploy/ configure it: every target is up,
/// `sidecar_requests_total` arrives with the labels and values the sidecars counted, and
/// `control-plane stat` reads the web -> payments edge back from it.
@Suite(
    .serialized,
    .enabled(if: prometheusPath() != nil, "prometheus not found on PATH or in .build-tools/: run scripts/install-deps.sh"))
struct PrometheusScrapeTests {
    @Test func prometheusScrapesEverySidecarAndTheControlPlaneAndStatShowsTheEdge() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        try await mesh.declarePayments()
        let (web, payments, call) = try await mesh.webCallingPayments(
            web: ", dependencies: [ payments ]", payments: ", labels: { version: v1 }")

        // The scrape config the demo generates: a `service` label on every sidecar target.
        let prometheus = try await PrometheusProcess(configYAML: """
            global: { scrape_interval: 1s, evaluation_interval: 1s }
            scrape_configs:
              - job_name: control-plane
                scheme: https
                tls_config: { ca_file: "\(mesh.directory.path)/ca.pem" }
                static_configs: [ { targets: [ "127.0.0.1:\(mesh.server.port)" ] } ]
              - job_name: sidecars
                static_configs:
                  - { targets: [ "127.0.0.1:\(web.admin)" ], labels: { service: web } }
                  - { targets: [ "127.0.0.1:\(payments.admin)" ], labels: { service: payments, version: v1 } }
            """, in: mesh.directory)
        defer { prometheus.stop() }

        var targets: [(labels: [String: String], health: String, lastError: String)] = []
        let allUp = await eventually(timeout: .seconds(30)) {
            targets = (try? await prometheus.targets()) ?? []
            return targets.count == 3 && targets.allSatisfy { $0.health == "up" }
        }
        #expect(allUp, "targets: \(targets)")
        #expect(Set(targets.compactMap { $0.labels["job"] }) == ["control-plane", "sidecars"])
        let up = try await prometheus.query("up")
        #expect(up.count == 3 && up.allSatisfy { $0.value == 1 }, "\(up)")

        // Traffic after the first scrape, so rates see it: web's readiness poll made one 200.
        for _ in 0..<6 { #expect(try await curl(call).status == 200) }
        let outbound = "sidecar_requests_total{direction=\"outbound\",service=\"web\",code=\"200\"}"
        let inbound = "sidecar_requests_total{direction=\"inbound\",service=\"payments\",code=\"200\"}"
        var samples: [(labels: [String: String], value: Double)] = []
        #expect(await eventually(timeout: .seconds(20)) {
            samples = ((try? await prometheus.query(outbound)) ?? []) + ((try? await prometheus.query(inbound)) ?? [])
            return samples.count == 2 && samples.allSatisfy { $0.value == 7 }
        }, "\(samples)")
        let webSample = try #require(samples.first { $0.labels["service"] == "web" })
        #expect(webSample.labels == [
            "__name__": "sidecar_requests_total", "direction": "outbound", "peer": "payments", "code": "200",
            "job": "sidecars", "instance": "127.0.0.1:\(web.admin)", "service": "web",
        ])
        let paymentsSample = try #require(samples.first { $0.labels["service"] == "payments" })
        #expect(paymentsSample.labels["peer"] == "web", "the inbound names the caller from its certificate")
        #expect(paymentsSample.labels["version"] == "v1")
        // The same numbers the sidecars expose themselves.
        let webMetrics = try await adminMetrics(web.admin)
        #expect(metricValue(webMetrics, "sidecar_requests_total", ["direction": "outbound", "peer": "payments", "code": "200"]) == 7)
        let cpIssued = try await prometheus.query("control_plane_certificates_issued_total")
        #expect(cpIssued.first?.value ?? 0 >= 2, "\(cpIssued)")

        // `control-plane stat` against this Prometheus shows the edge and both services.
        var stat: (status: Int32, stdout: String, stderr: String) = (0, "", "")
        var edge: [String: Any]?
        #expect(await eventually(timeout: .seconds(20)) {
            guard let result = try? await ChildProcess.run(
                [ControlPlaneServer.binary, "stat", "--prometheus", prometheus.url, "-o", "json"]) else { return false }
            stat = result
            let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            edge = (object?["edges"] as? [[String: Any]])?.first { $0["from"] as? String == "web" && $0["to"] as? String == "payments" }
            return ((edge?["requestsPerSecond"] as? Double) ?? 0) > 0
        }, "\(stat.stdout) \(stat.stderr)")
        // Near 1, not exactly: web's readiness poll got 503s (no endpoint yet) just before the
        // first scrape, and rate() extrapolates over the window's edges.
        #expect((edge?["successRate"] as? Double ?? 0) > 0.99, "\(String(describing: edge))")
        #expect(edge?["sidecars"] as? Int == 1)
        let table = try await ChildProcess.run([ControlPlaneServer.binary, "stat", "payments", "--prometheus", prometheus.url])
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("SERVICE") == true, "\(table.stdout)")
        #expect(lines.contains { $0.hasPrefix("payments ") && $0.contains("100.00%") }, "inbound saw only 200s: \(table.stdout)")
        #expect(lines.contains { $0.hasPrefix("web ") && $0.contains("payments") }, "\(table.stdout)")
    }
}

/// `control-plane stat` with no Prometheus listening: one clear line naming the URL.
@Suite struct StatWithoutPrometheusTests {
    @Test func statNamesThePrometheusItCannotReach() async throws {
        let port = try freeLoopbackPort()
        let result = try await ChildProcess.run([ControlPlaneServer.binary, "stat", "--prometheus", "http://127.0.0.1:\(port)"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot reach Prometheus at http://127.0.0.1:\(port)"), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
    }
}
