import MeshTestSupport
import Testing

@testable import SidecarCore

/// Missing, unreadable, empty or mismatched material: a clear error naming the file, no crash.
@Suite struct TLSConfigurationErrorTests {
    static let pki = TestPKI()

    @Test func missingCertificateFileIsNamed() {
        let config = TLSConfiguration(
            certificateChain: .file("/nonexistent/web.pem"), privateKey: .file("/nonexistent/web.key"),
            trustRoots: .pem(Self.pki.rootPEM))
        #expect {
            try TLSContext(configuration: config, role: .server)
        } throws: { error in
            let error = error as? TLSConfigurationError
            return error?.file == "/nonexistent/web.pem" && error!.description.contains("cannot open")
        }
    }

    @Test func garbagePEMIsRefusedWithItsName() {
        let identity = Self.pki.issue(service: "web")
        let config = TLSConfiguration(
            certificateChain: .pem("hello, not a certificate", name: "certs/web.pem"),
            privateKey: .pem(identity.keyPEM), trustRoots: .pem(Self.pki.rootPEM))
        #expect {
            try TLSContext(configuration: config, role: .server)
        } throws: { error in
            (error as? TLSConfigurationError)?.description.hasPrefix("certs/web.pem: no PEM certificate found") == true
        }
    }

    @Test func mismatchedKeyIsRefused() {
        let web = Self.pki.issue(service: "web")
        let other = Self.pki.issue(service: "payments")
        let config = TLSConfiguration(
            certificateChain: .pem(web.certificatePEM, name: "web.pem"),
            privateKey: .pem(other.keyPEM, name: "payments.key"), trustRoots: .pem(Self.pki.rootPEM))
        #expect {
            try TLSContext(configuration: config, role: .server)
        } throws: { error in
            (error as? TLSConfigurationError)?.description
                == "payments.key: private key does not match the certificate in web.pem"
        }
    }

    @Test func badKeyIsRefused() {
        let web = Self.pki.issue(service: "web")
        let config = TLSConfiguration(
            certificateChain: .pem(web.certificatePEM, name: "web.pem"),
            privateKey: .pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", name: "web.key"),
            trustRoots: .pem(Self.pki.rootPEM))
        #expect {
            try TLSContext(configuration: config, role: .server)
        } throws: { error in
            (error as? TLSConfigurationError)?.file == "web.key"
        }
    }

    @Test func serverWithoutCertificateIsRefused() {
        #expect(throws: TLSConfigurationError.self) {
            try TLSContext(configuration: TLSConfiguration(trustRoots: .pem(Self.pki.rootPEM)), role: .server)
        }
    }

    @Test func leafExpiryIsExposed() throws {
        let web = Self.pki.issue(service: "web", lifetime: 3600)
        let context = try TLSContext(configuration: web.configuration(), role: .client)
        let expiry = try #require(context.certificateExpiry)
        let now = Int64(Date().timeIntervalSince1970)
        #expect(expiry > now + 3400 && expiry < now + 3700)
        #expect(context.leafCertificate?.spiffeID == SPIFFEID("spiffe://mesh.local/service/web"))
    }
}

import Foundation
