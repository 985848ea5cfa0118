import ControlPlane
import Foundation
import MeshAPI
import MeshCertificates
import MeshTestSupport
import SidecarCore
import Testing

/// The token routes in memory: create with validated names, ttl and uses; list without
/// secrets; revoke; a CSR takes a use; expired, revoked and used-up tokens get 401 saying which.
@Suite(.sharedEtcdCluster) struct JoinTokenRouteTests {
    private func csrBody(_ service: String) throws -> String {
        let csr = try CertificateMinting.makeCSR(
            identity: SPIFFEID.service(service)!, keyPEM: CertificateMinting.makePrivateKeyPEM())
        return String(decoding: try JSONEncoder().encode(APIMessages.CertificateRequest(csr: csr)), as: UTF8.self)
    }

    private func create(_ fixture: ControlPlaneFixture, _ body: String) async -> APIResponse {
        await fixture.request("POST", "/v1/tokens", body: body)
    }

    @Test(arguments: StoreBackend.available) func serviceNamesTtlAndUsesAreValidated(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let slash = await create(fixture, #"{"service":"A/B"}"#)
        #expect(slash.status == 400)
        #expect(slash.body.contains("not a valid service name") && slash.body.contains("lowercase letters"), "\(slash.body)")
        let long = await create(fixture, #"{"service":"\#(String(repeating: "a", count: 10_000))"}"#)
        #expect(long.status == 400)
        #expect(long.body.contains("10000 characters") && long.body.count < 400, "a clear, short message: \(long.body)")
        #expect(await create(fixture, #"{"service":""}"#).status == 400)
        #expect(await create(fixture, #"{"service":"web","uses":0}"#).status == 400)
        #expect(await create(fixture, #"{"service":"web","ttl":"0s"}"#).status == 400)
        #expect(await create(fixture, #"{"service":"web","ttl":"9000h"}"#).status == 400)
        #expect(try fixture.store.joinTokens().isEmpty)
    }

    @Test(arguments: StoreBackend.available) func aTokenExpiresIn24HoursByDefaultAndTheStoreHasOnlyItsHash(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let before = Int64(Date().timeIntervalSince1970)
        let created = await create(fixture, #"{"service":"web"}"#)
        #expect(created.status == 201, "\(created.body)")
        let answer = try JSONDecoder().decode(APIMessages.TokenResponse.self, from: Data(created.body.utf8))
        let expiresAt = try #require(answer.expiresAt)
        #expect((before + 86_400...before + 86_460).contains(expiresAt))
        #expect(answer.usesLeft == nil)
        let stored = try #require(try fixture.store.joinTokens().first)
        #expect(stored.id == answer.id && stored.secretHash == DataDirectory.hash(answer.token))
        #expect(stored.secretHash != answer.token)
        let hour = try JSONDecoder().decode(
            APIMessages.TokenResponse.self, from: Data(await create(fixture, #"{"service":"web","ttl":"1h","uses":3}"#).body.utf8))
        #expect(hour.expiresAt.map { $0 - before } .map { (3600...3660).contains($0) } == true)
        #expect(hour.usesLeft == 3)
    }

    @Test(arguments: StoreBackend.available) func listShowsEveryTokenWithoutSecretsAndOnlyToTheAdmin(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let web = try await fixture.controlPlane.createJoinToken(service: "web", uses: 2)
        let payments = try await fixture.controlPlane.createJoinToken(service: "payments", ttl: .hours(1))
        let listed = await fixture.request("GET", "/v1/tokens")
        #expect(listed.status == 200)
        #expect(!listed.body.contains(web.token) && !listed.body.contains(payments.token), "never a secret")
        #expect(!listed.body.contains(DataDirectory.hash(web.token)), "nor a hash")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(listed.body.utf8)) as? [[String: Any]])
        #expect(rows.count == 2)
        #expect(rows.allSatisfy { Set($0.keys) == ["id", "service", "expires", "usesLeft", "state"] }, "\(rows)")
        let first = rows[0], second = rows[1]
        #expect(first["service"] as? String == "payments" && first["usesLeft"] is NSNull && first["state"] as? String == "active")
        #expect(second["id"] as? String == web.id && second["usesLeft"] as? Int == 2)
        #expect((first["expires"] as? String)?.hasSuffix("Z") == true, "RFC 3339, UTC")

        #expect(await fixture.request("GET", "/v1/tokens", token: web.token).status == 403)
        #expect(await fixture.request("GET", "/v1/tokens", token: nil).status == 401)
        #expect(await fixture.request("DELETE", "/v1/tokens/\(web.id!)", token: web.token).status == 403)
    }

    @Test(arguments: StoreBackend.available) func aRevokedTokenIsRefusedAtOnceSayingSo(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let token = try await fixture.controlPlane.createJoinToken(service: "web")
        #expect(await fixture.request("GET", "/v1/snapshot/web", token: token.token).status == 200)
        let revoked = await fixture.request("DELETE", "/v1/tokens/\(token.id!)")
        #expect(revoked.status == 200, "\(revoked.body)")
        #expect(jsonObject(revoked.body)["state"] as? String == "revoked")
        let refused = await fixture.request("POST", "/v1/certificates", body: try csrBody("web"), token: token.token)
        #expect(refused.status == 401)
        #expect(refused.body.contains("revoked"), "\(refused.body)")
        #expect(await fixture.request("GET", "/v1/snapshot/web", token: token.token).status == 401)
        #expect(await fixture.request("DELETE", "/v1/tokens/unknown").status == 404)
        #expect(fixture.controlPlane.metrics.certificatesIssued == 0)
    }

    @Test(arguments: StoreBackend.available) func eachCertificateTakesAUseAndAUsedUpTokenIsRefused(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let token = try await fixture.controlPlane.createJoinToken(service: "web", uses: 1)
        // A CSR the CA refuses (another service) takes no use.
        #expect(await fixture.request("POST", "/v1/certificates", body: try csrBody("payments"), token: token.token).status == 403)
        let issued = await fixture.request("POST", "/v1/certificates", body: try csrBody("web"), token: token.token)
        #expect(issued.status == 201, "\(issued.body)")
        let again = await fixture.request("POST", "/v1/certificates", body: try csrBody("web"), token: token.token)
        #expect(again.status == 401)
        #expect(again.body.contains("used up"), "\(again.body)")
        let listed = await fixture.request("GET", "/v1/tokens")
        #expect(listed.body.contains(#""state":"used-up""#) && listed.body.contains(#""usesLeft":0"#), "\(listed.body)")
        #expect(fixture.controlPlane.metrics.certificatesIssued == 1)
    }

    @Test(arguments: StoreBackend.available) func twoConcurrentCSRsWithAOneUseTokenGetOneCertificate(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let token = try await fixture.controlPlane.createJoinToken(service: "web", uses: 1)
        let bodies = [try csrBody("web"), try csrBody("web")]
        async let first = fixture.request("POST", "/v1/certificates", body: bodies[0], token: token.token)
        async let second = fixture.request("POST", "/v1/certificates", body: bodies[1], token: token.token)
        let statuses = await [first.status, second.status].sorted()
        #expect(statuses == [201, 401])
        #expect(fixture.controlPlane.metrics.certificatesIssued == 1)
    }

    @Test(arguments: StoreBackend.available) func anExpiredTokenIsRefusedSayingSo(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let secret = "expired-secret"
        try await fixture.store.saveJoinToken(JoinToken(secretHash: DataDirectory.hash(secret), service: "web", expiresAt: 1))
        let refused = await fixture.request("POST", "/v1/certificates", body: try csrBody("web"), token: secret)
        #expect(refused.status == 401)
        #expect(refused.body.contains("expired at 1970-01-01T00:00:01Z"), "\(refused.body)")
    }

    /// The router decides from the head alone: an unauthenticated or unroutable request is
    /// refused without its body being looked at.
    @Test(arguments: StoreBackend.available) func admissionNeedsOnlyTheHead(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        func admit(_ method: String, _ uri: String, token: String?) -> APIRouter.Admission {
            let headers = token.map { [("Authorization", "Bearer \($0)")] } ?? []
            return fixture.router.admit(APIRequest(method: method, uri: uri, headers: headers, body: "", peerIdentity: nil))
        }
        guard case .refused(let missing) = admit("POST", "/v1/apply", token: nil) else {
            Issue.record("admitted without a token")
            return
        }
        #expect(missing.status == 401)
        guard case .refused(let unknown) = admit("POST", "/nowhere", token: nil) else {
            Issue.record("admitted an unknown route")
            return
        }
        #expect(unknown.status == 404)
        let join = try await fixture.controlPlane.createJoinToken(service: "web")
        guard case .refused(let forbidden) = admit("POST", "/v1/apply", token: join.token) else {
            Issue.record("a join token was admitted to an admin route")
            return
        }
        #expect(forbidden.status == 403)
        guard case .accepted(let route, let principal) = admit("POST", "/v1/certificates", token: join.token) else {
            Issue.record("a join token was refused")
            return
        }
        #expect(route.template == "/v1/certificates" && principal == .joinToken(id: join.id!, service: "web"))
        guard case .accepted(_, nil) = admit("GET", "/metrics", token: nil) else {
            Issue.record("/metrics needs no credentials")
            return
        }
    }
}
