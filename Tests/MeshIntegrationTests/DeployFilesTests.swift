import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// deploy/prometheus (recording rules, alerts) and deploy/grafana (the dashboard) are checked
/// like code: promtool accepts the rules, the dashboard is valid JSON with its service
/// variable, and every metric they name is one the sidecar or the control plane exposes.
@Suite struct DeployFilesTests {
    static let ruleFiles = ["deploy/prometheus/rules.yaml", "deploy/prometheus/alerts.yaml"]
    static let dashboard = "deploy/grafana/mesh.json"

    static func read(_ path: String) throws -> String {
        try String(contentsOf: packageRoot.appendingPathComponent(path), encoding: .utf8)
    }

    /// Families on `/metrics`: name -> kind.
    static let exposed: [String: MetricDescriptor.Kind] = {
        let families = SidecarMetrics().registry.families + ControlPlaneMetrics().registry.families
        return Dictionary(families.map { ($0.descriptor.name, $0.descriptor.kind) }) { first, _ in first }
    }()

    /// Metric names in PromQL text (`sidecar_…`, `control_plane_…`), with a histogram's
    /// `_bucket`/`_sum`/`_count` series mapped to its family; recording-rule names
    /// (`level:metric:ops`) are returned apart.
    static func metricNames(in text: String) -> (families: Set<String>, unknown: Set<String>, recorded: Set<String>) {
        var families: Set<String> = [], unknown: Set<String> = [], recorded: Set<String> = []
        let identifier = /[A-Za-z_:][A-Za-z0-9_:]*/
        for match in text.matches(of: identifier) {
            let token = String(match.output)
            if token.contains(":") {
                if token.contains("sidecar_") { recorded.insert(token) }
                continue
            }
            guard token.hasPrefix("sidecar_") || token.hasPrefix("control_plane_") else { continue }
            if exposed[token] != nil {
                families.insert(token)
                continue
            }
            let base = ["_bucket", "_sum", "_count"].compactMap { suffix in
                token.hasSuffix(suffix) ? String(token.dropLast(suffix.count)) : nil
            }.first
            if let base, exposed[base] == .histogram { families.insert(base) } else { unknown.insert(token) }
        }
        return (families, unknown, recorded)
    }

    @Test func promtoolAcceptsTheRulesAndAlerts() async throws {
        let promtool = try #require(promtoolPath(), "promtool not found on PATH or in .build-tools/: run scripts/install-deps.sh")
        let paths = Self.ruleFiles.map { packageRoot.appendingPathComponent($0).path }
        let result = try await ChildProcess.run([promtool, "check", "rules"] + paths)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("SUCCESS"), "\(result.stdout)")
    }

    @Test func rulesNameOnlyExposedMetricsAndTheAlertsTheIssueAsksFor() throws {
        let rules = try Self.read(Self.ruleFiles[0]), alerts = try Self.read(Self.ruleFiles[1])
        let defined = Set(rules.matches(of: /record: ([A-Za-z_:][A-Za-z0-9_:]*)/).map { String($0.output.1) })
        for text in [rules, alerts] {
            let names = Self.metricNames(in: text)
            #expect(names.unknown.isEmpty, "not exposed by the sidecar or the control plane: \(names.unknown)")
            #expect(names.recorded.isSubset(of: defined), "not recorded in rules.yaml: \(names.recorded.subtracting(defined))")
        }
        for alert in [
            "MeshServiceHighErrorRate", "MeshCertificateExpiringSoon", "MeshControlPlaneDown",
            "MeshSidecarDisconnectedFromControlPlane", "MeshCircuitBreakerOpen",
        ] {
            #expect(alerts.contains("alert: \(alert)\n"), "\(alert)")
        }
    }

    @Test func theDashboardIsValidAndNamesOnlyExposedMetrics() throws {
        let text = try Self.read(Self.dashboard)
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(dashboard["uid"] as? String == "mesh-golden")
        let variables = try #require((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        let service = try #require(variables.first { $0["name"] as? String == "service" })
        #expect(service["includeAll"] as? Bool == true && service["multi"] as? Bool == true)

        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        var expressions: [String] = []
        var ids: Set<Int> = []
        for panel in panels {
            if let id = panel["id"] as? Int { #expect(ids.insert(id).inserted, "panel id \(id) twice") }
            guard panel["type"] as? String != "row" else { continue }
            let targets = try #require(panel["targets"] as? [[String: Any]], "\(panel["title"] ?? "?") has no targets")
            #expect(!targets.isEmpty)
            expressions += targets.compactMap { $0["expr"] as? String }
        }
        let names = Self.metricNames(in: expressions.joined(separator: "\n"))
        #expect(names.unknown.isEmpty, "not exposed by the sidecar or the control plane: \(names.unknown)")
        #expect(names.recorded.isEmpty, "the dashboard works without the recording rules")
        // The golden metrics, resilience, identity and control plane the issue lists.
        let wanted: Set = [
            "sidecar_requests_total", "sidecar_request_duration_seconds", "sidecar_retries_total",
            "sidecar_circuit_breaker_rejections_total", "sidecar_outlier_ejections_total",
            "sidecar_cert_expiry_timestamp_seconds", "sidecar_control_plane_connected",
            "control_plane_push_duration_seconds", "sidecar_config_version",
        ]
        #expect(wanted.isSubset(of: names.families), "missing: \(wanted.subtracting(names.families))")
        // Every per-service panel filters by the variable.
        #expect(expressions.filter { $0.contains("sidecar_") }.allSatisfy { $0.contains("$service") },
                "\(expressions.filter { $0.contains("sidecar_") && !$0.contains("$service") })")
    }

    @Test func promtoolAcceptsThePrometheusConfigWithItsRuleFiles() async throws {
        let promtool = try #require(promtoolPath(), "promtool not found on PATH or in .build-tools/: run scripts/install-deps.sh")
        let config = packageRoot.appendingPathComponent("deploy/prometheus/prometheus.yml").path
        let result = try await ChildProcess.run([promtool, "check", "config", config])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("SUCCESS: 2 rule files found"), "\(result.stdout)")
        let text = try Self.read("deploy/prometheus/prometheus.yml")
        #expect(text.matches(of: /labels: \{ service: [a-z]+/).count == 4, "every sidecar target names its service")
    }

    /// The tests' Python, with jsonschema and PyYAML (scripts/install-deps.sh makes it).
    static let python: String? = {
        let path = packageRoot.appendingPathComponent(".venv/bin/python3").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    /// scripts/check-compose.py on `paths`: the vendored Compose Specification schema, then
    /// every file the Compose file names.
    static func checkCompose(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let python = try #require(python, "no .venv/bin/python3 with jsonschema and PyYAML: run scripts/install-deps.sh")
        return try await ChildProcess.run(
            [python, packageRoot.appendingPathComponent("scripts/check-compose.py").path] + arguments)
    }

    @Test func composeFileMatchesTheComposeSpecificationAndEveryFileItNamesExists() async throws {
        let compose = packageRoot.appendingPathComponent("deploy/compose.yaml").path
        let result = try await Self.checkCompose([compose])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout == "\(compose): ok\n", "\(result.stdout)\(result.stderr)")
    }

    /// The check can fail: copies of compose.yaml with a misspelt key, a wrong type and a
    /// config file that is not there are each refused with the place named.
    @Test func brokenComposeFilesAreRefused() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let text = try Self.read("deploy/compose.yaml")
        // Paths resolved as if beside the real file, so only the one broken reference is missing.
        let deploy = packageRoot.appendingPathComponent("deploy").path
        let broken: [(name: String, text: String, expected: String)] = [
            ("misspelt.yaml",
             text.replacingOccurrences(of: "    command: [ \"sidecar\", \"--config\", \"/web.yaml\" ]",
                                       with: "    comand: [ \"sidecar\", \"--config\", \"/web.yaml\" ]"),
             "services.web-sidecar: 'comand' does not match any of the regexes"),
            ("wrong-type.yaml",
             text.replacingOccurrences(of: "ports: [ \"9090:9090\" ]", with: "ports: { web: 9090 }"),
             "services.prometheus.ports: {'web': 9090} is not of type 'array'"),
            ("missing-file.yaml",
             text.replacingOccurrences(of: "file: ./prometheus/alerts.yaml", with: "file: ./prometheus/alert.yaml"),
             "configs.prometheus-alerts.file: ./prometheus/alert.yaml does not exist"),
        ]
        for (name, brokenText, expected) in broken {
            #expect(brokenText != text, "\(name): the replacement found nothing to break")
            let path = directory.path + "/" + name
            try brokenText.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try await Self.checkCompose(["--directory", deploy, path])
            #expect(result.status == 1, "\(name): \(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("\(path): \(expected)"), "\(name): \(result.stdout)\(result.stderr)")
            #expect(!result.stdout.contains(": ok\n"), "\(name)")
        }
    }

    @Test func everyFileTheDockerfileCopiesExists() throws {
        let compose = try Self.read("deploy/compose.yaml")
        #expect(compose.contains("dockerfile: deploy/Dockerfile"))
        let dockerfile = try Self.read("deploy/Dockerfile")
        for copied in dockerfile.matches(of: #/^COPY (?!--from)([^ ]+) /#.anchorsMatchLineEndings()).map({ String($0.output.1) }) {
            #expect(FileManager.default.fileExists(atPath: packageRoot.appendingPathComponent(copied).path), "Dockerfile copies \(copied)")
        }
        // The image runs as a non-root user.
        #expect(dockerfile.contains("\nUSER mesh\n"))
    }

    static let systemdAnalyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    @Test(.enabled(if: systemdAnalyze != nil, "systemd-analyze is not installed"))
    func systemdUnitsPassSystemdAnalyzeVerify() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // The units name /usr/local/bin; verify them against the binaries built here.
        let binaries = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent().path + "/"
        let units = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("deploy/systemd").path)
        #expect(Set(units) == ["mesh-control-plane.service", "mesh-sidecar@.service"])
        for unit in units {
            let text = try Self.read("deploy/systemd/\(unit)")
            #expect(text.contains("Restart=on-failure") && text.contains("NoNewPrivileges=yes") && text.contains("DynamicUser=yes"), "\(unit)")
            try text.replacingOccurrences(of: "/usr/local/bin/", with: binaries)
                .write(toFile: directory.path + "/" + unit, atomically: true, encoding: .utf8)
        }
        try FileManager.default.createSymbolicLink(
            atPath: directory.path + "/mesh-sidecar@payments.service", withDestinationPath: "mesh-sidecar@.service")
        let result = try await ChildProcess.run(
            [Self.systemdAnalyze!, "verify", "--man=no", "./mesh-control-plane.service", "./mesh-sidecar@payments.service"],
            directory: directory.path)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect((result.stdout + result.stderr).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(result.stdout)\(result.stderr)")
    }
}
