import Foundation
import MeshTestSupport
import Testing

/// SIGHUP re-reads the gateway's server certificates: replaced files serve new connections
/// (openssl s_client sees the new issuer), and a file that does not load is refused with a
/// message naming the key while the certificate before it keeps serving.
@Suite(.serialized) struct GatewayCertificateReloadTests {
    /// The issuer line `openssl s_client` prints for the certificate served to `api.example.com`.
    static func servedIssuer(_ edge: GatewayMesh) async throws -> String {
        let client = try await ChildProcess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:\(edge.httpsPort)", "-servername", "api.example.com"], input: "")
        return client.stdout.split(separator: "\n").first { $0.hasPrefix("issuer=") }.map(String.init) ?? client.stderr
    }

    @Test func sighupServesReplacedCertificatesAndRefusesABadFile() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: GatewayCacheTests.resources())
        #expect(try await Self.servedIssuer(edge).contains("external test root"))

        // New files from another CA, copied over the served ones (its ca.pem stays aside).
        let external = edge.mesh.directory.url.appendingPathComponent("external")
        let rotated = external.appendingPathComponent("rotated")
        try FileManager.default.createDirectory(at: rotated, withIntermediateDirectories: true)
        let files = try TestPKI(commonName: "rotated test root").issue(service: "api", dnsNames: ["api.example.com"])
            .write(to: rotated, name: "api.example.com")
        for (from, to) in [(files.cert, "api.example.com.pem"), (files.key, "api.example.com.key")] {
            try String(contentsOfFile: from, encoding: .utf8).write(to: external.appendingPathComponent(to), atomically: true, encoding: .utf8)
        }
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
}
