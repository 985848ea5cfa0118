import Foundation
import MeshTestSupport
import Testing

/// A small mesh for policy tests: `payments` sidecars in front of the given apps (each
/// instance labelled as asked) and one `web` sidecar whose routes to payments the test writes.
/// Certificates are minted here, ports are fresh, every sidecar has an explicit admin port.
final class PaymentsMesh {
    let directory = TemporaryDirectory()
    let pki = TestPKI()
    private(set) var sidecars: [SidecarProcess] = []
    private(set) var web: SidecarProcess!
    /// Instance resources (YAML list items) for every payments sidecar, for web's resources.
    private(set) var instances = ""
    let webOut: Int
    let webAdmin: Int
    /// The admin port of each payments sidecar, in `backends` order.
    private(set) var paymentsAdmins: [Int] = []
    /// The inbound (mTLS) port of each payments sidecar, in `backends` order.
    private(set) var paymentsInbounds: [Int] = []

    /// - Parameters:
    ///   - backends: each payments app and the labels of its instance, e.g. `version: v1`.
    ///   - paymentsResources: YAML list items for the `resources:` of the payments sidecar at an index.
    ///   - webResources: YAML list items appended to web's `resources:` after the instances.
    ///   - webArguments: extra `sidecar` arguments for web (its access log is on unless turned off here).
    init(
        backends: [(app: TestHTTPApp, labels: String)], paymentsResources: (Int) -> String = { _ in "" },
        webResources: String, webArguments: [String] = []
    ) async throws {
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try pki.issue(service: "web").write(to: certs, name: "web")
        try pki.issue(service: "payments").write(to: certs, name: "payments")
        for (index, backend) in backends.enumerated() {
            let inbound = try freeLoopbackPort(), admin = try freeLoopbackPort()
            paymentsAdmins.append(admin)
            paymentsInbounds.append(inbound)
            let extra = paymentsResources(index)
            let sidecar = try SidecarProcess(configYAML: """
                service: payments
                inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(backend.app.port) }
                outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                admin:    { listen: 127.0.0.1:\(admin) }
                tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
                \(extra.isEmpty ? "" : "resources:\n" + extra)
                """, in: directory, name: "payments-\(index)", extraArguments: ["--access-log", "off"])
            sidecars.append(sidecar)
            #expect(await sidecar.waitUntilListening(ports: [inbound]), "\(sidecar.logs)")
            instances += "\n  - { kind: Instance, service: payments, address: 127.0.0.1, port: \(inbound), labels: { \(backend.labels) } }"
        }
        webOut = try freeLoopbackPort()
        webAdmin = try freeLoopbackPort()
        web = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(webOut) }
            admin:    { listen: 127.0.0.1:\(webAdmin) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            resources:\(instances)
            \(webResources)
            """, in: directory, name: "web", extraArguments: webArguments)
        sidecars.append(web)
        #expect(await web.waitUntilListening(ports: [webOut]), "\(web.logs)")
    }

    deinit {
        sidecars.forEach { $0.stop() }
        directory.remove()
    }

    /// web's admin `/metrics`.
    func webMetrics() async throws -> String { try await curl(["http://127.0.0.1:\(webAdmin)/metrics"]).body }

    /// One curl run through web's outbound: each URL's `-w` output (default: status and total
    /// seconds) on its own line.
    func run(
        _ urls: [String], extra: [String] = [], format: String = "%{http_code} %{time_total}\\n",
        timeout: Duration = .seconds(120)
    ) async throws -> [Substring] {
        let result = try await ChildProcess.run(
            ["curl", "-sS", "-w", format, "-x", "http://127.0.0.1:\(webOut)"] + extra
                + urls.flatMap { ["-o", "/dev/null", $0] },
            timeout: timeout)
        return result.stdout.split(separator: "\n")
    }
}
