import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// Canary routing: a weighted split between label subsets, and header-matched rules, across
/// two real `payments` sidecars (v1 and v2) behind one `web` sidecar.
@Suite(.serialized) final class TrafficSplitTests {
    let directory = TemporaryDirectory()
    let pki = TestPKI()
    var sidecars: [SidecarProcess] = []
    var apps: [TestHTTPApp] = []
    var webOut = 0

    init() async throws {
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try pki.issue(service: "web").write(to: certs, name: "web")
        try pki.issue(service: "payments").write(to: certs, name: "payments")
        webOut = try freeLoopbackPort()
        var instances = ""
        for version in ["v1", "v2"] {
            let app = try await TestHTTPApp(name: "payments-\(version)")
            apps.append(app)
            let inbound = try freeLoopbackPort()
            let sidecar = try SidecarProcess(configYAML: """
                service: payments
                inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(app.port) }
                outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                admin:    { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
                """, in: directory, name: "payments-\(version)", extraArguments: ["--access-log", "off"])
            #expect(await sidecar.waitUntilListening(ports: [inbound]), "\(sidecar.logs)")
            sidecars.append(sidecar)
            instances += """

                  - { kind: Instance, service: payments, address: 127.0.0.1, port: \(inbound), labels: { version: \(version) } }
                """
        }
        let web = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(webOut) }
            admin:    { listen: 127.0.0.1:\(try freeLoopbackPort()) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            resources:\(instances)
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: /, headers: { x-canary: "1" } }
                    backends: [ { subset: { version: v2 }, weight: 100 } ]
                    requestHeaders: { set: { x-routed: canary } }
                  - match: { pathPrefix: / }
                    backends: [ { subset: { version: v1 }, weight: 90 }, { subset: { version: v2 }, weight: 10 } ]
            """, in: directory, name: "web", extraArguments: ["--access-log", "off"])
        #expect(await web.waitUntilListening(ports: [webOut]), "\(web.logs)")
        sidecars.append(web)
    }

    deinit {
        sidecars.forEach { $0.stop() }
        directory.remove()
    }

    @Test func ninetyTenSplitHoldsWithinThreePercentOver2000Requests() async throws {
        let urls = (0..<2000).flatMap { ["-o", "/dev/null", "http://payments/split/\($0)"] }
        let result = try await ChildProcess.run(
            ["curl", "-sS", "-w", "%{http_code}\n", "-x", "http://127.0.0.1:\(webOut)"] + urls, timeout: .seconds(180))
        #expect(result.stdout.split(separator: "\n").filter { $0 == "200" }.count == 2000, "\(result.stderr)")
        let v1 = apps[0].requests, v2 = apps[1].requests
        #expect(v1 + v2 == 2000)
        #expect(abs(Double(v2) / 2000 - 0.10) <= 0.03, "v1 \(v1), v2 \(v2)")
    }

    @Test func headerMatchSendsCanaryTrafficToV2() async throws {
        for _ in 0..<20 {
            let response = try await curl(["-x", "http://127.0.0.1:\(webOut)", "-H", "x-canary: 1", "http://payments/try"])
            #expect(response.status == 200)
            #expect(response.body.contains("app=payments-v2"))
        }
        #expect(apps[0].requests == 0)
    }
}
