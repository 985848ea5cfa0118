import Foundation
import MeshTestSupport
import Testing

/// Traffic mirroring between real sidecars: the caller is served by v1 while a copy of each
/// request (body included) goes to v2, fire-and-forget; a dead mirror endpoint changes nothing
/// for the caller; `percent` mirrors a share.
@Suite(.serialized) final class MirrorTests {
    let v1: TestHTTPApp
    let v2: TestHTTPApp
    let mesh: PaymentsMesh

    init() async throws {
        v1 = try await TestHTTPApp(name: "payments-v1")
        v2 = try await TestHTTPApp(name: "payments-v2")
        let dead = try freeLoopbackPort()  // nothing listens there
        mesh = try await PaymentsMesh(backends: [(v1, "version: v1"), (v2, "version: v2")], webResources: """
              - { kind: Instance, service: payments, address: 127.0.0.1, port: \(dead), labels: { version: v3 } }
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: /dead }
                    backends: [ { subset: { version: v1 }, weight: 100 } ]
                    mirror: { subset: { version: v3 }, percent: 100 }
                  - match: { pathPrefix: /share }
                    backends: [ { subset: { version: v1 }, weight: 100 } ]
                    mirror: { subset: { version: v2 }, percent: 30 }
                  - match: { pathPrefix: / }
                    backends: [ { subset: { version: v1 }, weight: 100 } ]
                    mirror: { subset: { version: v2 }, percent: 100 }
            """)
    }

    func mirrored(_ result: String) async throws -> Double? {
        metricValue(try await mesh.webMetrics(), "sidecar_mirror_requests_total", ["peer": "payments", "result": result])
    }

    @Test func everyRequestIsCopiedToV2AndTheCallerOnlySeesV1() async throws {
        var answers: [String] = []
        for index in 0..<20 {
            answers.append(try await curl(["-x", "http://127.0.0.1:\(mesh.webOut)", "http://payments/get/\(index)"]).body)
        }
        let body = String(repeating: "m", count: 2048)
        for index in 0..<10 {
            answers.append(try await curl(["-x", "http://127.0.0.1:\(mesh.webOut)", "-X", "POST", "-H", "Expect:",
                                           "--data-binary", body, "http://payments/post/\(index)"]).body)
        }
        #expect(answers.allSatisfy { $0.hasPrefix("app=payments-v1 ") }, "\(answers)")
        #expect(v1.requests == 30)
        #expect(await eventually(timeout: .seconds(20)) { self.v2.requests == 30 }, "\(v2.requests)")
        #expect(v2.bodyBytes == 10 * 2048)
        #expect(v1.bodyBytes == 10 * 2048)
        #expect(await eventually(timeout: .seconds(10)) { (try? await self.mirrored("completed")) == 30 })
        let logged = { self.mesh.web.accessLog.split(separator: "\n").filter { $0.contains("\"path\":\"/") } }
        _ = await eventually(timeout: .seconds(5)) { logged().count >= 30 }  // written in batches
        let lines = logged()
        #expect(lines.count == 30 && lines.allSatisfy { $0.contains("\"mirrored\":true") }, "\(mesh.web.accessLog)")
    }

    @Test func aDeadMirrorEndpointDoesNotFailTheCaller() async throws {
        let lines = try await mesh.run((0..<20).map { "http://payments/dead/\($0)" })
        #expect(lines.count == 20 && lines.allSatisfy { $0.hasPrefix("200 ") }, "\(lines)")
        #expect(v1.requests == 20)
        #expect(await eventually(timeout: .seconds(10)) { (try? await self.mirrored("failed")) == 20 })
        #expect(v2.requests == 0)
    }

    @Test func aThirtyPercentMirrorCopiesAboutThirtyPercent() async throws {
        let lines = try await mesh.run((0..<300).map { "http://payments/share/\($0)" })
        #expect(lines.filter { $0.hasPrefix("200 ") }.count == 300)
        // Settled: every copy v2 received has been answered.
        #expect(await eventually(timeout: .seconds(10)) {
            (try? await self.mirrored("completed")).map { Int($0) == self.v2.requests } ?? false
        })
        // 90 expected; ±30 is about 3.8 standard deviations.
        #expect((60...120).contains(v2.requests), "\(v2.requests)")
    }
}
