import ControlPlane
import Foundation
import MeshAPI
import MeshCertificates
import MeshTestSupport
import SidecarCore
import Testing

/// Workload certificates from CSRs: the right identity and lifetime, refusal of others' IDs.
@Suite struct CertificateAuthorityTests {
    static let authority = try! CertificateAuthority.create(trustDomain: "mesh.local")

    func csr(_ service: String, trustDomain: String = "mesh.local") throws -> String {
        try CertificateMinting.makeCSR(
            identity: SPIFFEID.service(service, trustDomain: trustDomain)!, keyPEM: CertificateMinting.makePrivateKeyPEM())
    }

    @Test func issuesA24HourLeafForItsOwnService() async throws {
        let issued = try Self.authority.issue(csrPEM: try csr("web"), for: .service("web"))
        #expect(issued.identity.description == "spiffe://mesh.local/service/web")
        let certificate = try TLSCertificate.loadChain(from: .pem(issued.certificatePEM))[0]
        #expect(certificate.spiffeID?.serviceName == "web")
        // Valid 24 h from now; notBefore is back-dated for slow clocks, on top of that.
        let lifetime = certificate.notAfter - certificate.notBefore
        #expect(lifetime == Int64(CertificateAuthority.clockSkewAllowance) + 86_400)
        #expect(abs(issued.expiresAt.timeIntervalSinceNow - 86_400) < 5)
        // It chains to the root, for a client and a server purpose.
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try Self.authority.rootPEM.write(toFile: directory.path + "/ca.pem", atomically: true, encoding: .utf8)
        try issued.certificatePEM.write(toFile: directory.path + "/leaf.pem", atomically: true, encoding: .utf8)
        for purpose in ["sslclient", "sslserver"] {
            let verify = try await ChildProcess.run([
                "openssl", "verify", "-purpose", purpose, "-CAfile", directory.path + "/ca.pem", directory.path + "/leaf.pem",
            ])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }

    /// The SANs of a PEM certificate as `openssl x509` prints them (`URI:…`, `DNS:…`, `IP Address:…`).
    func subjectAlternativeNames(_ certificatePEM: String) async throws -> [String] {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try certificatePEM.write(toFile: directory.path + "/leaf.pem", atomically: true, encoding: .utf8)
        let printed = try await ChildProcess.run([
            "openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", directory.path + "/leaf.pem",
        ])
        #expect(printed.status == 0, "\(printed.stderr)")
        return printed.stdout.split(separator: "\n").dropFirst()
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// A workload certificate must not pass a hostname check for another server (the control
    /// plane at `localhost`, another service's name): the CA signs the SPIFFE ID alone.
    @Test func signsOnlyTheSPIFFEIDAndDropsDNSAndIPNamesOfTheCSR() async throws {
        let request = try CertificateMinting.makeCSR(
            identity: SPIFFEID.service("web")!, keyPEM: CertificateMinting.makePrivateKeyPEM(),
            dnsNames: ["localhost", "payments"], ipAddresses: ["127.0.0.1", "::1"])
        #expect(try CertificateMinting.inspectCSR(request).dnsNames == ["localhost", "payments"])
        for requester in [CertificateAuthority.Requester.service("web"), .admin] {
            let issued = try Self.authority.issue(csrPEM: request, for: requester)
            #expect(issued.identity == SPIFFEID.service("web"))
            #expect(try await subjectAlternativeNames(issued.certificatePEM) == ["URI:spiffe://mesh.local/service/web"])
        }
    }

    @Test func refusesAServiceTokenAskingForANonServiceIdentity() throws {
        for id in ["spiffe://mesh.local/admin", "spiffe://mesh.local/control-plane", "spiffe://mesh.local/service/web/x"] {
            let request = try CertificateMinting.makeCSR(identity: SPIFFEID(id)!, keyPEM: CertificateMinting.makePrivateKeyPEM())
            for requester in [CertificateAuthority.Requester.service("web"), .admin] {
                let error = #expect(throws: CertificateAuthorityError.self) {
                    try Self.authority.issue(csrPEM: request, for: requester)
                }
                #expect(error == .forbidden("the CSR asks for \(id), outside spiffe://mesh.local/service/<name>"))
            }
        }
    }

    @Test func theServerCertificateCarriesTheControlPlaneIdentity() async throws {
        let credentials = try Self.authority.makeServerCredentials(listenHost: "10.1.2.3")
        let certificate = try TLSCertificate.loadChain(from: .pem(credentials.certificatePEM))[0]
        #expect(certificate.spiffeIDs == [SPIFFEID("spiffe://mesh.local/control-plane")!])
        #expect(try await subjectAlternativeNames(credentials.certificatePEM) == [
            "URI:spiffe://mesh.local/control-plane", "DNS:localhost", "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1", "IP Address:10.1.2.3",
        ])
    }

    @Test func refusesACSRForAnotherService() throws {
        #expect(throws: CertificateAuthorityError.self) {
            try Self.authority.issue(csrPEM: try csr("payments"), for: .service("web"))
        }
        do {
            _ = try Self.authority.issue(csrPEM: try csr("payments"), for: .service("web"))
        } catch let error as CertificateAuthorityError {
            guard case .forbidden(let message) = error else { Issue.record("expected forbidden, got \(error)"); return }
            #expect(message.contains("spiffe://mesh.local/service/payments"))
            #expect(message.contains("spiffe://mesh.local/service/web"))
        }
    }

    @Test func refusesAForeignTrustDomainEvenForTheAdmin() throws {
        #expect(throws: CertificateAuthorityError.self) {
            try Self.authority.issue(csrPEM: try csr("web", trustDomain: "evil.example"), for: .admin)
        }
        #expect(try Self.authority.issue(csrPEM: try csr("payments"), for: .admin).identity.serviceName == "payments")
    }

    @Test func garbageIsAnInvalidRequest() {
        #expect(throws: CertificateAuthorityError.self) {
            try Self.authority.issue(csrPEM: "not a csr", for: .admin)
        }
    }

    @Test func certificateRouteRefusesAnotherServicesIDWith403() async throws {
        let fixture = try ControlPlaneFixture()
        defer { fixture.remove() }
        let token = try await fixture.controlPlane.createJoinToken(service: "web", ttl: nil).token
        let body = try String(decoding: JSONEncoder().encode(APIMessages.CertificateRequest(csr: csr("payments"))), as: UTF8.self)
        let refused = await fixture.request("POST", "/v1/certificates", body: body, token: token)
        #expect(refused.status == 403, "\(refused.body)")
        let ownBody = try String(decoding: JSONEncoder().encode(APIMessages.CertificateRequest(csr: csr("web"))), as: UTF8.self)
        let issued = await fixture.request("POST", "/v1/certificates", body: ownBody, token: token)
        #expect(issued.status == 201, "\(issued.body)")
        #expect(jsonObject(issued.body)["identity"] as? String == "spiffe://mesh.local/service/web")
        // With the client certificate (mTLS) instead of a token, the same rule holds.
        let viaPeer = await fixture.request(
            "POST", "/v1/certificates", body: body, token: nil, peer: SPIFFEID.service("web"))
        #expect(viaPeer.status == 403)
        #expect(fixture.controlPlane.metrics.certificatesIssued == 1)
    }

    @Test func rootRotationSignsWithTheNewRootWhileTheBundleKeepsBoth() async throws {
        let old = Self.authority
        let oldLeaf = try old.issue(csrPEM: try csr("web"), for: .service("web")).certificatePEM
        let newKey = CertificateMinting.makePrivateKeyPEM()
        let newRoot = try CertificateMinting.makeRoot(commonName: "mesh CA 2", keyPEM: newKey)
        let rotated = CertificateAuthority(rootPEM: old.rootPEM + "\n" + newRoot, rootKeyPEM: newKey, trustDomain: "mesh.local")
        let newLeaf = try rotated.issue(csrPEM: try csr("payments"), for: .service("payments")).certificatePEM

        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = ["bundle.pem": rotated.rootPEM, "old.pem": old.rootPEM, "old-leaf.pem": oldLeaf, "new-leaf.pem": newLeaf]
        for (name, text) in files { try text.write(toFile: directory.path + "/" + name, atomically: true, encoding: .utf8) }
        func verifies(_ leaf: String, against bundle: String) async throws -> Bool {
            try await ChildProcess.run(["openssl", "verify", "-CAfile", directory.path + "/" + bundle, directory.path + "/" + leaf]).status == 0
        }
        #expect(try await verifies("old-leaf.pem", against: "bundle.pem"))
        #expect(try await verifies("new-leaf.pem", against: "bundle.pem"))
        #expect(try await !verifies("new-leaf.pem", against: "old.pem"), "the new leaf must be signed by the new root")

        // A data dir whose key belongs to no root in ca.pem is refused with the reason.
        let dataDir = directory.path + "/data"
        _ = try DataDirectory(path: dataDir).loadOrCreate(trustDomain: "mesh.local")
        try CertificateMinting.makePrivateKeyPEM().write(toFile: dataDir + "/ca.key", atomically: true, encoding: .utf8)
        #expect {
            try DataDirectory(path: dataDir).loadOrCreate(trustDomain: "mesh.local")
        } throws: { error in
            "\(error)".contains("is the key of no certificate in")
        }
    }
}
