import ControlPlane
import Foundation
import MeshAPI
import MeshCertificates
import MeshTestSupport
import NIOCore
import NIOPosix
import SidecarCore
import Testing

/// The real server binary and CLI: join tokens that expire, run out and can be revoked, and
/// an API that refuses unauthenticated bodies on their head and caps its connections.
@Suite(.serialized) struct ControlPlaneSecurityTests {
    private func certificateRequest(_ service: String) throws -> String {
        let csr = try CertificateMinting.makeCSR(
            identity: SPIFFEID.service(service)!, keyPEM: CertificateMinting.makePrivateKeyPEM())
        return String(decoding: try JSONEncoder().encode(APIMessages.CertificateRequest(csr: csr)), as: UTF8.self)
    }

    @Test func tokenCreateListRevokeAndUsesThroughTheCLI() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }

        let once = try await server.cli(["token", "create", "--service", "web", "--uses", "1", "--ttl", "1h"])
        #expect(once.status == 0, "\(once.stderr)")
        let onceSecret = once.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(onceSecret.count == 64 && !onceSecret.contains(" "), "the token alone on stdout: \(once.stdout)")
        #expect(once.stderr.contains("for service web") && once.stderr.contains("1 use"), "\(once.stderr)")
        let other = try await server.cli(["token", "create", "--service", "payments"])
        #expect(other.status == 0, "\(other.stderr)")
        let otherSecret = other.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        let listed = try await server.cli(["token", "list", "-o", "json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(!listed.stdout.contains(onceSecret) && !listed.stdout.contains(otherSecret), "never a secret")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(rows.count == 2)
        for row in rows { #expect(["id", "service", "expires", "usesLeft"].allSatisfy { row.keys.contains($0) }, "\(row)") }
        let webID = try #require(rows.first { $0["service"] as? String == "web" }?["id"] as? String)
        let paymentsID = try #require(rows.first { $0["service"] as? String == "payments" }?["id"] as? String)
        let table = try await server.cli(["token", "list"])
        #expect(table.stdout.contains("ID") && table.stdout.contains("USES LEFT") && table.stdout.contains(webID), "\(table.stdout)")

        // A 1-use token is good for one certificate.
        let web = try server.client(token: onceSecret)
        let issued = try await web.send(.POST, "/v1/certificates", body: try certificateRequest("web"))
        #expect(issued.status == 201, "\(issued.body)")
        let usedUp = try await web.send(.POST, "/v1/certificates", body: try certificateRequest("web"))
        #expect(usedUp.status == 401)
        #expect(usedUp.body.contains("used up") && usedUp.body.contains(webID), "\(usedUp.body)")

        // A revoked token is refused at once.
        let payments = try server.client(token: otherSecret)
        #expect(try await payments.send(.GET, "/v1/snapshot/payments").status == 200)
        let revoked = try await server.cli(["token", "revoke", paymentsID])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(revoked.stdout.contains("revoked"))
        let refused = try await payments.send(.POST, "/v1/certificates", body: try certificateRequest("payments"))
        #expect(refused.status == 401)
        #expect(refused.body.contains("revoked"), "\(refused.body)")
        let states = try await server.cli(["token", "list", "-o", "json"])
        #expect(states.stdout.contains(#""state":"revoked""#) && states.stdout.contains(#""state":"used-up""#), "\(states.stdout)")

        let unknown = try await server.cli(["token", "revoke", "0000000000000000"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("404"), "\(unknown.stderr)")
    }

    @Test func badServiceNamesTtlsAndUsesAreClearErrors() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        for service in ["A/B", String(repeating: "a", count: 10_000)] {
            let refused = try await server.cli(["token", "create", "--service", service])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("400") && refused.stderr.contains("not a valid service name"), "\(refused.stderr.prefix(300))")
            #expect(refused.stderr.count < 400, "one short line")
        }
        let ttl = try await server.cli(["token", "create", "--service", "web", "--ttl", "soon"])
        #expect(ttl.status != 0 && ttl.stderr.contains("not a duration"), "\(ttl.stderr)")
        let uses = try await server.cli(["token", "create", "--service", "web", "--uses", "0"])
        #expect(uses.status != 0 && uses.stderr.contains("at least 1"), "\(uses.stderr)")
        let listed = try await server.cli(["token", "list", "-o", "json"])
        #expect(listed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[]", "\(listed.stdout)")
    }

    /// The head announces 100 MiB and no token; a few bytes follow. The answer is 401 at once
    /// (the server does not wait for, or keep, the body) and the connection is closed.
    @Test func anUnauthenticatedHugeBodyGets401AtOnce() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        let connection = try await RawHTTPSConnection.connect(port: server.port, caPEM: server.caPEM)
        defer { connection.close() }
        let started = ContinuousClock.now
        try await connection.send(
            "POST /v1/apply HTTP/1.1\r\nhost: cp\r\ncontent-type: application/yaml\r\ncontent-length: \(100 << 20)\r\n\r\nkind: Service\n")
        #expect(await eventually(timeout: .seconds(10)) { connection.status != nil }, "no answer: \(connection.received)")
        #expect(connection.status == 401)
        #expect(started.duration(to: .now) < .seconds(5), "answered without waiting for the body")
        #expect(connection.received.contains(#"{"error":"#))
        #expect(await eventually(timeout: .seconds(10)) { connection.isClosed }, "the connection is closed after the answer")
        // Within the size limit too: the answer does not wait for the body.
        let withinLimit = try await RawHTTPSConnection.connect(port: server.port, caPEM: server.caPEM)
        defer { withinLimit.close() }
        try await withinLimit.send(
            "POST /v1/apply HTTP/1.1\r\nhost: cp\r\ncontent-type: application/yaml\r\ncontent-length: \(1 << 20)\r\n\r\nkind: Service\n")
        #expect(await eventually(timeout: .seconds(10)) { withinLimit.status != nil }, "no answer: \(withinLimit.received)")
        #expect(withinLimit.status == 401)
        let stored = try await server.cli(["get", "all", "-o", "json"])
        #expect(stored.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
    }

    @Test func serveCapsItsConnections() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path, extraArguments: ["--max-connections", "2"])
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        // Two connections that never finish a handshake hold both slots.
        let held = [
            try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get(),
            try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get(),
        ]
        // A third is closed by the server as soon as it is accepted (the held ones keep theirs).
        var refused = false
        for _ in 0..<50 where !refused {
            let third = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get()
            refused = await eventually(timeout: .seconds(2)) { !third.isActive }
            try? await third.close()
        }
        #expect(refused, "a connection over the cap is closed")
        #expect(held.allSatisfy { $0.isActive })
        for channel in held { try await channel.close() }
        // Once they are gone, clients get in again.
        let admin = try server.client(token: server.adminToken)
        #expect(await eventually(timeout: .seconds(10)) { (try? await admin.send(.GET, "/v1/resources").status) == 200 })
        let help = try await ChildProcess.run([ControlPlaneServer.binary, "serve", "--help"])
        #expect(help.stdout.contains("--max-connections"), "\(help.stdout)")
    }
}
