import Foundation
import MeshAPI
import MeshCertificates
import MeshTestSupport
import NIOPosix
import SidecarCore
import Testing

/// Who may claim which identity, with the real binaries: a workload certificate (obtained with
/// a join token, as any sidecar does) does not make its holder the control plane, and a
/// certificate for a non-service SPIFFE ID does not get through a sidecar's inbound.
@Suite(.serialized) struct MeshIdentityTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// The CSR path end to end: a join token for `web`, a CSR that also asks for `localhost`,
    /// `payments` and 127.0.0.1; the leaf carries the SPIFFE ID alone.
    func workloadCertificate(from server: ControlPlaneServer, in directory: TemporaryDirectory) async throws -> TestIdentity {
        let created = try await server.cli(["token", "create", "--service", "web", "--ttl", "1h"])
        #expect(created.status == 0, "\(created.stderr)")
        let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let key = CertificateMinting.makePrivateKeyPEM()
        let csr = try CertificateMinting.makeCSR(
            identity: SPIFFEID.service("web")!, keyPEM: key, dnsNames: ["localhost", "payments"], ipAddresses: ["127.0.0.1"])
        let body = String(decoding: try JSONEncoder().encode(APIMessages.CertificateRequest(csr: csr)), as: UTF8.self)
        let answer = try await server.client(token: token).send(.POST, "/v1/certificates", body: body)
        #expect(answer.status == 201, "\(answer.body)")
        let issued = try JSONDecoder().decode(APIMessages.CertificateResponse.self, from: Data(answer.body.utf8))
        let leaf = directory.path + "/web-leaf.pem"
        try issued.certificate.write(toFile: leaf, atomically: true, encoding: .utf8)
        let printed = try await ChildProcess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", leaf])
        let names = printed.stdout.split(separator: "\n").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(names == ["URI:spiffe://mesh.local/service/web"], "\(printed.stdout)\(printed.stderr)")
        return TestIdentity(certificatePEM: issued.certificate, keyPEM: key, trustPEM: issued.bundle)
    }

    /// A TLS server presenting `identity` and recording whatever plaintext reaches it.
    func impostor(presenting identity: TestIdentity) async throws -> TLSTestServer {
        var configuration = identity.configuration(peerIdentity: .any)
        configuration.certificateVerification = .optional
        let context = try TLSContext(configuration: configuration, role: .server)
        return try await TLSTestServer(group: group, store: TLSContextStore(context), fixture: .http(body: "[]"))
    }

    @Test func cliAndSidecarRefuseAServerPresentingAWorkloadCertificate() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path + "/control-plane")
        defer { server.stop() }
        let impostor = try await impostor(presenting: try await workloadCertificate(from: server, in: directory))
        let tokenFile = server.dataDir + "/admin.token", caFile = server.dataDir + "/ca.pem"
        let expected = "is not the control plane: it presented spiffe://mesh.local/service/web, "
            + "expected spiffe://mesh.local/control-plane; nothing was sent to it"

        // The operator CLI, by IP and by host name (the CSR asked for DNS:localhost in vain).
        for host in ["127.0.0.1", "localhost"] {
            let url = "https://\(host):\(impostor.port)"
            let refused = try await ChildProcess.run([
                ControlPlaneServer.binary, "get", "routes", "--server", url, "--token-file", tokenFile, "--ca-file", caFile,
            ])
            #expect(refused.status == 1)
            #expect(refused.stderr == "control-plane: \(url) \(expected)\n", "\(refused.stderr)")
        }
        // The same command against the real control plane works.
        let real = try await ChildProcess.run([
            ControlPlaneServer.binary, "get", "routes", "--server", server.url, "--token-file", tokenFile, "--ca-file", caFile,
        ])
        #expect(real.status == 0, "\(real.stderr)")

        // A dynamic sidecar pointed at the impostor stops at once (exit 2) and names both identities.
        let joinToken = try await server.cli(["token", "create", "--service", "payments", "--ttl", "1h"])
        try joinToken.stdout.write(toFile: directory.path + "/payments.token", atomically: true, encoding: .utf8)
        try String(contentsOfFile: caFile, encoding: .utf8).write(toFile: directory.path + "/ca.pem", atomically: true, encoding: .utf8)
        let sidecar = try SidecarProcess(configYAML: """
            service: payments
            inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
            admin:    { listen: 127.0.0.1:\(try freeLoopbackPort()) }
            controlPlane: { address: https://127.0.0.1:\(impostor.port), tokenFile: payments.token, caFile: ca.pem }
            """, in: directory, name: "payments")
        defer { sidecar.stop() }
        #expect(await sidecar.process.wait(timeout: .seconds(20)) == 2, "\(sidecar.logs)")
        #expect(sidecar.logs.contains("https://127.0.0.1:\(impostor.port) \(expected)"), "\(sidecar.logs)")

        // Three handshakes, each refused by the client; no admin token, join token or CSR arrived.
        #expect(await eventually { impostor.errorReasons.count == 3 })
        try await impostor.close()
        #expect(impostor.errorReasons == [.peerRejected, .peerRejected, .peerRejected])
        #expect(impostor.connections.allSatisfy { $0.receivedCount == 0 })
        #expect(impostor.connections.allSatisfy { $0.handshakeInfo == nil })
    }

    @Test func sidecarInboundRefusesANonServiceIdentity() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let pki = TestPKI()
        try pki.issue(service: "payments").write(to: directory.url, name: "payments")
        let admin = try pki.issue(identity: SPIFFEID("spiffe://mesh.local/admin")!).write(to: directory.url, name: "admin")
        let app = try await TestHTTPApp(name: "payments-app")
        let (inbound, adminPort) = (try freeLoopbackPort(), try freeLoopbackPort())
        let sidecar = try SidecarProcess(configYAML: """
            service: payments
            inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(app.port) }
            outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
            admin:    { listen: 127.0.0.1:\(adminPort) }
            tls:      { cert: payments.pem, key: payments.key, trustBundle: ca.pem }
            """, in: directory, name: "payments")
        defer { sidecar.stop() }
        #expect(await sidecar.waitUntilListening(ports: [inbound, adminPort]), "\(sidecar.logs)")

        // A certificate from the mesh CA, in the mesh's trust domain, but not a service's.
        let client = try ChildProcess([
            "openssl", "s_client", "-connect", "127.0.0.1:\(inbound)", "-tls1_3", "-quiet", "-no_ign_eof",
            "-servername", "payments", "-alpn", "http/1.1",
            "-cert", admin.cert, "-key", admin.key, "-CAfile", admin.ca, "-verify_return_error",
        ])
        defer { client.terminate() }
        client.write("GET /pay HTTP/1.1\r\nHost: payments\r\n\r\n")
        let refusals = ["direction": "inbound", "reason": "identity-mismatch"]
        #expect(await eventually {
            metricValue((try? await adminMetrics(adminPort)) ?? "", "sidecar_tls_handshake_errors_total", refusals) == 1
        }, "\(sidecar.logs)")
        // The sidecar's alert ends s_client with an error; it read no response.
        #expect(await client.wait(timeout: .seconds(10)) != 0)
        #expect(client.stderr.contains("alert"), "\(client.stderr)")
        #expect(!client.stdout.contains("HTTP/1.1"), "\(client.stdout)")
        #expect(app.requests == 0 && app.connections == 0)
        try await app.close()
    }
}
