import Foundation
import MeshTestSupport
import Testing

/// The dashboard end to end: a real control plane, two dynamic sidecars (web declares that it
/// calls payments) with traffic between them, then curl for the HTTP rules (session refusals,
/// cookie flags, security headers, bearer rules unchanged) and headless Chromium through
/// Selenium (Tests/Browser/dashboard_test.py) for the pages themselves, live updates included.
/// Screenshots of every page at 1280×800 and 390×844 land in .build/dashboard-screenshots/.
@Suite(.serialized) struct DashboardBrowserTests {
    static let script = packageRoot.appendingPathComponent("Tests/Browser/dashboard_test.py").path
    static let screenshots = packageRoot.appendingPathComponent(".build/dashboard-screenshots").path

    /// The venv's python with selenium, when Chromium and its driver are installed too.
    static let browser: String? = {
        let python = packageRoot.appendingPathComponent(".venv/bin/python3").path
        let found = ["/usr/bin/chromium", "/usr/bin/chromedriver", python].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
        return found ? python : nil
    }()

    @Test func theDashboardRefusesEveryRequestWithoutASessionAndKeepsTheBearerRules() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        let url = mesh.server.url
        let token = mesh.server.adminToken

        // Pages redirect to sign-in, data answers 401; the sign-in page has the strict CSP.
        for path in ["/ui/", "/ui/proxies", "/ui/topology", "/ui/resources", "/ui/services/web", "/ui/nothing"] {
            let page = try await curl(["-k", url + path])
            #expect(page.status == 303 && page.headers["location"] == "/ui/login", "\(path): \(page.status) \(page.headers)")
        }
        #expect(try await curl(["-k", url + "/ui/events?after=0"]).status == 401)
        let login = try await curl(["-k", url + "/ui/login"])
        #expect(login.status == 200 && login.body.contains("name=\"token\""))
        let csp = login.headers["content-security-policy"] ?? ""
        #expect(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "\(csp)")
        #expect(!login.body.contains("<script>") && !login.body.contains("style="), "inline script or style")

        // A bearer token opens no page; a wrong token gets no cookie; the right one a secure one.
        #expect(try await curl(["-k", "-H", "Authorization: Bearer \(token)", url + "/ui/"]).status == 303)
        let wrong = try await curl(["-k", "--data-urlencode", "token=wrong", url + "/ui/login"])
        #expect(wrong.status == 401 && wrong.headers["set-cookie"] == nil)
        let crossSite = try await curl(["-k", "-H", "Origin: https://evil.example", "--data-urlencode", "token=\(token)", url + "/ui/login"])
        #expect(crossSite.status == 403 && crossSite.headers["set-cookie"] == nil)
        let signedIn = try await curl(["-k", "--data-urlencode", "token=\(token)", url + "/ui/login"])
        let cookie = try #require(signedIn.headers["set-cookie"])
        #expect(signedIn.status == 303 && signedIn.headers["location"] == "/ui/")
        for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/ui", "Max-Age="] { #expect(cookie.contains(flag), "\(cookie)") }
        let session = String(cookie.split(separator: ";")[0])
        let overview = try await curl(["-k", "-H", "Cookie: \(session)", url + "/ui/"])
        #expect(overview.status == 200 && overview.body.contains("<h1>Overview</h1>"), "\(overview.status)")

        // The session opens no API route; the API's bearer rules are as before.
        #expect(try await curl(["-k", "-H", "Cookie: \(session)", url + "/v1/proxies"]).status == 401)
        #expect(try await curl(["-k", "-H", "Authorization: Bearer \(token)", url + "/v1/proxies"]).status == 200)

        // A browser's next connection resumes the TLS session of the first (no client
        // certificate, which the API makes optional): it must be answered like the first.
        let twice = try await ChildProcess.run([
            "curl", "-sk", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} ", "-H", "Connection: close", url + "/ui/login", url + "/ui/login",
        ])
        #expect(twice.stdout == "200 200 ", "\(twice.stdout) \(twice.stderr)")

        // Sign-out ends it.
        let out = try await curl(["-k", "-X", "POST", "-H", "Cookie: \(session)", url + "/ui/logout"])
        #expect(out.status == 303 && (out.headers["set-cookie"] ?? "").contains("Max-Age=0"))
        #expect(try await curl(["-k", "-H", "Cookie: \(session)", url + "/ui/"]).status == 303)
    }

    @Test(.enabled(if: prometheusPath() != nil, "no prometheus binary: run scripts/install-deps.sh"))
    func withPrometheusTheTopologyHasTrafficRatesAndServicePagesHaveCharts() async throws {
        let prometheusPort = try freeLoopbackPort()
        let mesh = try await DynamicModeTests.Mesh(serverArguments: ["--prometheus", "http://127.0.0.1:\(prometheusPort)"])
        defer { mesh.stop() }
        try await mesh.declarePayments()
        let (web, payments, call) = try await mesh.webCallingPayments(web: ", dependencies: [ payments ]")
        let prometheus = try await PrometheusProcess(configYAML: """
            global: { scrape_interval: 1s }
            scrape_configs:
              - job_name: sidecars
                static_configs:
                  - { targets: [ "127.0.0.1:\(web.admin)" ], labels: { service: web } }
                  - { targets: [ "127.0.0.1:\(payments.admin)" ], labels: { service: payments } }
            """, in: mesh.directory, port: prometheusPort)
        defer { prometheus.stop() }
        let signedIn = try await curl(["-k", "--data-urlencode", "token=\(mesh.server.adminToken)", mesh.server.url + "/ui/login"])
        let session = String(try #require(signedIn.headers["set-cookie"]).split(separator: ";")[0])

        // Traffic until Prometheus has a rate for the edge; the topology labels it in words.
        var topology = ""
        let rated = await eventually(timeout: .seconds(40)) {
            for _ in 0..<5 { _ = try? await curl(call) }
            topology = (try? await curl(["-k", "-H", "Cookie: \(session)", mesh.server.url + "/ui/topology"]))?.body ?? ""
            return topology.contains("req/s") && topology.contains("% ok")
        }
        #expect(rated, "\(topology)")
        #expect(topology.contains("data-from=\"web\" data-to=\"payments\""))
        // The service page charts its golden metrics from range queries.
        var service = ""
        let charted = await eventually(timeout: .seconds(20)) {
            service = (try? await curl(["-k", "-H", "Cookie: \(session)", mesh.server.url + "/ui/services/payments"]))?.body ?? ""
            return service.contains("Requests per second") && service.contains("class=\"series\"")
        }
        #expect(charted, "\(service)")
        // The overview knows the soonest certificate expiry from the sidecars' own metric.
        let overview = try await curl(["-k", "-H", "Cookie: \(session)", mesh.server.url + "/ui/"])
        #expect(overview.body.contains("Soonest certificate expiry") && overview.body.contains(" h</span>"), "\(overview.body)")
    }

    @Test(.enabled(if: browser != nil, "chromium, chromium-driver or .venv with selenium missing: run scripts/install-deps.sh"))
    func headlessChromiumSignsInSeesBothServicesLiveVersionsAndTheTopology() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        try await mesh.declarePayments()
        let (_, _, call) = try await mesh.webCallingPayments(web: ", dependencies: [ payments ]")
        for _ in 0..<5 { _ = try await curl(call) }
        try? FileManager.default.removeItem(atPath: Self.screenshots)

        let result = try await ChildProcess.run([
            try #require(Self.browser), Self.script, "--url", mesh.server.url,
            "--token-file", mesh.server.dataDir + "/admin.token", "--cli", ControlPlaneServer.binary,
            "--data-dir", mesh.server.dataDir, "--screenshots", Self.screenshots,
        ], timeout: .seconds(240))
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        let saved = (try? FileManager.default.contentsOfDirectory(atPath: Self.screenshots)) ?? []
        #expect(saved.filter { $0.hasSuffix("-1280x800.png") }.count == 6 && saved.filter { $0.hasSuffix("-390x844.png") }.count == 6, "\(saved)")
    }
}
