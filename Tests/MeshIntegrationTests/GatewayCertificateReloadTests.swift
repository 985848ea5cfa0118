import Foundation
import MeshTestSupport
import Testing

/// SIGHUP re-reads the gateway's server certificates, in static and dynamic mode: replaced
/// files serve new connections (openssl s_client sees the new issuer), and a file that does
/// not load is refused with a message naming the key while the certificate before keeps serving.
@Suite(.serialized) struct GatewayCertificateReloadTests {
    /// The issuer line `openssl s_client` prints for the certificate served to `api.example.com`.
    static func servedIssuer(_ edge: GatewayMesh) async throws -> String { try await servedIssuer(port: edge.httpsPort) }

    static func servedIssuer(port: Int) async throws -> String {
        let client = try await ChildProcess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-servername", "api.example.com"], input: "")
        return client.stdout.split(separator: "\n").first { $0.hasPrefix("issuer=") }.map(String.init) ?? client.stderr
    }

    /// Writes a certificate for `api.example.com` from a new CA over the served files in
    /// `external` (the new CA's `ca.pem` stays aside).
    static func rotate(in external: URL) throws {
        let rotated = external.appendingPathComponent("rotated")
        try FileManager.default.createDirectory(at: rotated, withIntermediateDirectories: true)
        let files = try TestPKI(commonName: "rotated test root").issue(service: "api", dnsNames: ["api.example.com"])
            .write(to: rotated, name: "api.example.com")
        for (from, to) in [(files.cert, "api.example.com.pem"), (files.key, "api.example.com.key")] {
            try String(contentsOfFile: from, encoding: .utf8).write(to: external.appendingPathComponent(to), atomically: true, encoding: .utf8)
        }
    }

    @Test func sighupServesReplacedCertificatesAndRefusesABadFile() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: GatewayCacheTests.resources())
        #expect(try await Self.servedIssuer(edge).contains("external test root"))

        let external = edge.mesh.directory.url.appendingPathComponent("external")
        try Self.rotate(in: external)
        edge.gateway.signal(SIGHUP)
        #expect(await eventually(every: .milliseconds(100)) {
            (try? await Self.servedIssuer(edge))?.contains("rotated test root") == true
        }, "\(edge.gateway.logs)")

        try "not a certificate".write(to: external.appendingPathComponent("api.example.com.pem"), atomically: true, encoding: .utf8)
        edge.gateway.signal(SIGHUP)
        #expect(await eventually { edge.gateway.logs.contains("reload refused") }, "\(edge.gateway.logs)")
        #expect(edge.gateway.logs.contains("gateway.https.certificates"), "the message names the key: \(edge.gateway.logs)")
        #expect(try await Self.servedIssuer(edge).contains("rotated test root"), "the certificate before keeps serving")
        #expect(try await edge.https("api.example.com", "/pay/a", ["--insecure"]).status == 200, "requests are answered")
    }

    /// A dynamic gateway (identity and routes from the control plane) reads its server
    /// certificate files again on SIGHUP, alone.
    @Test func aDynamicGatewayReloadsItsCertificatesOnSighup() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        let external = mesh.directory.url.appendingPathComponent("external")
        try FileManager.default.createDirectory(at: external, withIntermediateDirectories: true)
        try TestPKI(commonName: "external test root").issue(service: "api", dnsNames: ["api.example.com"])
            .write(to: external, name: "api.example.com")
        let token = try await mesh.token("edge")
        let (https, admin) = (try freeLoopbackPort(), try freeLoopbackPort())
        let gateway = try SidecarProcess(configYAML: """
            service: edge
            gateway: { https: { listen: 127.0.0.1:\(https), certificates: [ { cert: external/api.example.com.pem, key: external/api.example.com.key } ] } }
            admin:   { listen: 127.0.0.1:\(admin) }
            controlPlane: { address: \(mesh.server.url), tokenFile: \(token), caFile: ca.pem }
            """, in: mesh.directory, name: "edge")
        defer { gateway.stop() }
        #expect(await gateway.waitUntilListening(ports: [https]), "\(gateway.logs)")
        let issuer = { try await Self.servedIssuer(port: https) }
        #expect(try await issuer().contains("external test root"))
        try Self.rotate(in: external)
        gateway.signal(SIGHUP)
        #expect(await eventually(every: .milliseconds(100)) { (try? await issuer())?.contains("rotated test root") == true }, "\(gateway.logs)")
        try "not a key".write(to: external.appendingPathComponent("api.example.com.key"), atomically: true, encoding: .utf8)
        gateway.signal(SIGHUP)
        #expect(await eventually { gateway.logs.contains("reload refused") && gateway.logs.contains("gateway.https.certificates") },
                "\(gateway.logs)")
        #expect(try await issuer().contains("rotated test root"), "the certificate before keeps serving")
    }
}
