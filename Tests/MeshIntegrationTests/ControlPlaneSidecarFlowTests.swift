import ControlPlane
import Foundation
import MeshAPI
import MeshCertificates
import MeshTestSupport
import SidecarCore
import Testing

/// What sidecars do against the real server binary: certificates, registration, TTL, watches.
@Suite(.serialized) struct ControlPlaneSidecarFlowTests {
    func joinToken(_ server: ControlPlaneServer, service: String) async throws -> String {
        let token = try await server.cli(["token", "create", "--service", service, "--ttl", "1h"])
        #expect(token.status == 0, "\(token.stderr)")
        return token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func certificateRequest(_ service: String, key: String) throws -> String {
        let csr = try CertificateMinting.makeCSR(identity: SPIFFEID.service(service)!, keyPEM: key)
        return String(decoding: try JSONEncoder().encode(APIMessages.CertificateRequest(csr: csr)), as: UTF8.self)
    }

    @Test func csrForAnotherServiceIsRefusedWithTokenAndWithClientCertificate() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        let web = try server.client(token: try await joinToken(server, service: "web"))
        let key = CertificateMinting.makePrivateKeyPEM()

        let refused = try await web.send(.POST, "/v1/certificates", body: try certificateRequest("payments", key: key))
        #expect(refused.status == 403, "\(refused.body)")

        let issued = try await web.send(.POST, "/v1/certificates", body: try certificateRequest("web", key: key))
        #expect(issued.status == 201, "\(issued.body)")
        let certificate = try JSONDecoder().decode(APIMessages.CertificateResponse.self, from: Data(issued.body.utf8))
        #expect(certificate.identity == "spiffe://mesh.local/service/web")
        #expect(certificate.bundle == server.caPEM)

        // Renewal over mTLS with the certificate just issued, no token.
        let mtls = try server.client(token: nil, clientCertificate: (certificate.certificate, key))
        let renewed = try await mtls.send(.POST, "/v1/certificates", body: try certificateRequest("web", key: key))
        #expect(renewed.status == 201, "\(renewed.body)")
        let stolen = try await mtls.send(.POST, "/v1/certificates", body: try certificateRequest("payments", key: key))
        #expect(stolen.status == 403)
        let otherSnapshot = try await mtls.send(.GET, "/v1/snapshot/payments")
        #expect(otherSnapshot.status == 403)

        let metrics = try await mtls.send(.GET, "/metrics")
        #expect(metrics.body.contains("control_plane_certificates_issued_total 2"), "\(metrics.body)")
    }

    @Test func watcherSeesAChangeWithinOneSecond() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        let web = try server.client(token: try await joinToken(server, service: "web"))
        let first = try await web.send(.GET, "/v1/snapshot/web")
        #expect(first.status == 200)
        let version = try #require(jsonObject(first.body)["version"] as? String)

        async let watched = web.send(.GET, "/v1/snapshot/web?version=\(version)")
        let admin = try server.client(token: server.adminToken)
        #expect(await eventually {
            let metrics = try? await admin.send(.GET, "/metrics")
            return metrics?.body.contains("control_plane_watchers 1") == true
        })
        let applied = try await admin.send(
            .POST, "/v1/apply", body: "kind: Route\nservice: payments\nrules: [ { match: { pathPrefix: / }, backends: [ { subset: {}, weight: 100 } ] } ]\n",
            contentType: "application/yaml")
        // The change exists once the apply is acknowledged: propagation is timed from there.
        let changed = ContinuousClock.now
        #expect(applied.status == 200, "\(applied.body)")
        let response = try await watched
        let elapsed = changed.duration(to: .now)
        #expect(response.status == 200)
        #expect(response.body.contains("\"Route\""), "\(response.body)")
        #expect(elapsed < .seconds(1), "took \(elapsed)")
    }

    @Test func ttlExpiryMarksUnhealthyThenRemovesAnInstance() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(
            dataDir: directory.path, extraArguments: ["--instance-ttl", "3s", "--instance-grace", "1s"])
        defer { server.stop() }
        let payments = try server.client(token: try await joinToken(server, service: "payments"))
        let register = APIMessages.RegisterRequest(service: "payments", address: "127.0.0.1", port: 16006, labels: ["version": "v1"])
        let registered = try await payments.send(
            .POST, "/v1/register", body: String(decoding: try JSONEncoder().encode(register), as: UTF8.self))
        #expect(registered.status == 201, "\(registered.body)")
        let admin = try server.client(token: server.adminToken)
        // (A TTL of 3 s, not 1: on a loaded CI machine the register and this read took over a second.)
        #expect(try await admin.send(.GET, "/v1/snapshot/web").body.contains("payments-127.0.0.1-16006"))

        // No heartbeats: unhealthy (left out of snapshots, still listed), then removed.
        #expect(await eventually {
            let body = (try? await admin.send(.GET, "/v1/proxies"))?.body ?? ""
            return body.contains("\"health\":\"unhealthy\"")
        })
        #expect(try await !admin.send(.GET, "/v1/snapshot/web").body.contains("payments-127.0.0.1-16006"))
        #expect(await eventually {
            let proxies = try? await server.cli(["get", "proxies"])
            return proxies?.status == 0 && proxies?.stdout.contains("payments") == false
        })
        let heartbeat = try await payments.send(.POST, "/v1/heartbeat", body: #"{"name":"payments-127.0.0.1-16006"}"#)
        #expect(heartbeat.status == 404, "a removed instance must register again")
    }

    @Test func killDashNineDuringAnApplyBurstLosesNoAcknowledgedWrite() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        let admin = try server.client(token: server.adminToken)
        let acknowledged = AcknowledgedNames()
        let workers = 4, total = 500
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    for index in stride(from: worker, to: total, by: workers) {
                        let name = "svc-\(index)"
                        let body = "kind: Service\nname: \(name)\nport: \(1000 + index)\n---\nkind: Instance\nservice: \(name)\naddress: 10.0.0.1\nport: \(index + 1)\n"
                        guard let response = try? await admin.send(.POST, "/v1/apply", body: body, contentType: "application/yaml", timeout: .seconds(5)),
                            response.status == 200
                        else { return }
                        acknowledged.add(name)
                    }
                }
            }
            group.addTask {
                _ = await eventually(timeout: .seconds(60)) { acknowledged.count >= 100 }
                server.kill9()
            }
        }
        let written = acknowledged.names
        print("kill -9 after \(written.count) acknowledged applies of \(total)")
        #expect(written.count >= 100 && written.count < total, "the kill landed mid-burst (\(written.count) acknowledged)")

        let restarted = try await ControlPlaneServer(dataDir: directory.path)
        defer { restarted.stop() }
        let client = try restarted.client(token: restarted.adminToken)
        let services = try MeshResourceDecoder.decodeJSON(try await client.send(.GET, "/v1/resources/services").body)
        let instances = try MeshResourceDecoder.decodeJSON(try await client.send(.GET, "/v1/resources/instances").body)
        let serviceNames = Set(services.map(\.name))
        let instanceServices = Set(instances.map(\.service))
        #expect(written.isSubset(of: serviceNames), "lost: \(written.subtracting(serviceNames).sorted())")
        // All or nothing per apply: every stored Service has its Instance and vice versa.
        #expect(serviceNames == instanceServices)
        for case .service(let service) in services {
            #expect(service.port == 1000 + Int(service.name.dropFirst(4))!)
        }
    }
}

/// Names acknowledged by the server, shared between worker tasks.
final class AcknowledgedNames: @unchecked Sendable {
    private let lock = NSLock()
    private var set = Set<String>()
    func add(_ name: String) { lock.withLock { _ = set.insert(name) } }
    var count: Int { lock.withLock { set.count } }
    var names: Set<String> { lock.withLock { set } }
}

func jsonObject(_ body: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
}
