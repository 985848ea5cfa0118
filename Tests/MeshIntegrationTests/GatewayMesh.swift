import Foundation
import MeshTestSupport
import Testing

/// The meshes a gateway can front: their directory and CA, and their instances' resources.
protocol GatewayBackendMesh: AnyObject {
    var directory: TemporaryDirectory { get }
    var pki: TestPKI { get }
    var instances: String { get }
}

extension PaymentsMesh: GatewayBackendMesh {}
extension GRPCMesh: GatewayBackendMesh {}

/// The mesh's front door in front of `PaymentsMesh` (or a `GRPCMesh`): a gateway sidecar
/// (`service: edge`, its own workload certificate) with an HTTPS listener serving one
/// certificate per external host (`api.example.com`, `www.example.com`, minted here and chosen
/// by SNI; left out with `https: false`), a plain HTTP listener, and the GatewayRoute/AuthenticationPolicy resources the test writes.
final class GatewayMesh {
    static let hosts = ["api.example.com", "www.example.com"]
    let mesh: any GatewayBackendMesh
    let gateway: SidecarProcess
    let httpsPort: Int
    let httpPort: Int
    let admin: Int
    /// The CA that signed the external certificates (curl's `--cacert`).
    let externalCA: String

    /// - Parameters:
    ///   - gatewayResources: YAML list items for the gateway's `resources:` (after the instances).
    ///   - redirectToHttps: the plain listener only redirects.
    ///   - https: false: the gateway has the plain listener only.
    convenience init(
        backends: [(app: TestHTTPApp, labels: String)], paymentsResources: (Int) -> String = { _ in "" },
        gatewayResources: String, redirectToHttps: Bool = false, https: Bool = true, files: [String: String] = [:],
        arguments: [String] = []
    ) async throws {
        try await self.init(
            mesh: try await PaymentsMesh(backends: backends, paymentsResources: paymentsResources, webResources: ""),
            gatewayResources: gatewayResources, redirectToHttps: redirectToHttps, https: https, files: files, arguments: arguments)
    }

    /// In front of `mesh` (its instances are the gateway's too).
    init(
        mesh: any GatewayBackendMesh, gatewayResources: String, redirectToHttps: Bool = false, https: Bool = true,
        files: [String: String] = [:], arguments: [String] = []
    ) async throws {
        self.mesh = mesh
        let certs = mesh.directory.url.appendingPathComponent("certs")
        try mesh.pki.issue(service: "edge").write(to: certs, name: "edge")
        // The external certificates come from another CA, in their own folder (with its ca.pem).
        let external = mesh.directory.url.appendingPathComponent("external")
        try FileManager.default.createDirectory(at: external, withIntermediateDirectories: true)
        let externalPKI = TestPKI(commonName: "external test root")
        var caPath = ""
        for host in Self.hosts {
            caPath = try externalPKI.issue(service: host.split(separator: ".")[0].description, dnsNames: [host])
                .write(to: external, name: host).ca
        }
        externalCA = caPath
        for (name, text) in files {
            try text.write(to: mesh.directory.url.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        httpsPort = try freeLoopbackPort()
        httpPort = try freeLoopbackPort()
        admin = try freeLoopbackPort()
        let httpsListener = !https ? "" : """

              https:
                listen: 127.0.0.1:\(httpsPort)
                certificates:
                  - { cert: external/\(Self.hosts[0]).pem, key: external/\(Self.hosts[0]).key }
                  - { cert: external/\(Self.hosts[1]).pem, key: external/\(Self.hosts[1]).key }
            """
        gateway = try SidecarProcess(configYAML: """
            service: edge
            gateway:
              http:  { listen: 127.0.0.1:\(httpPort), redirectToHttps: \(redirectToHttps) }\(httpsListener)
            admin: { listen: 127.0.0.1:\(admin) }
            tls:   { cert: certs/edge.pem, key: certs/edge.key, trustBundle: certs/ca.pem }
            resources:\(mesh.instances)
            \(gatewayResources)
            """, in: mesh.directory, name: "edge", extraArguments: arguments)
        #expect(await gateway.waitUntilListening(ports: https ? [httpsPort, httpPort] : [httpPort]), "\(gateway.logs)")
    }

    deinit { gateway.stop() }

    /// curl over HTTPS to `host` (SNI and certificate check against the external CA), resolved to
    /// the gateway; HTTP/1.1 unless `extra` says `--http2` (the listener offers both by ALPN).
    func https(_ host: String, _ pathAndQuery: String, _ extra: [String] = []) async throws -> CurlResult {
        try await curl(["--http1.1", "--cacert", externalCA, "--resolve", "\(host):\(httpsPort):127.0.0.1"] + extra
            + ["https://\(host):\(httpsPort)\(pathAndQuery)"])
    }

    /// curl over plain HTTP with `Host: host`.
    func http(_ host: String, _ pathAndQuery: String, _ extra: [String] = []) async throws -> CurlResult {
        try await curl(["-H", "Host: \(host)"] + extra + ["http://127.0.0.1:\(httpPort)\(pathAndQuery)"])
    }

    func metrics() async throws -> String { try await adminMetrics(admin) }
}
