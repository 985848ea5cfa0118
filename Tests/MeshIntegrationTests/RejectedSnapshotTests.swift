import Foundation
import MeshTestSupport
import Testing

/// A snapshot the sidecar cannot apply, from a real control plane: refused whole (the running
/// configuration keeps serving), counted, reported in the heartbeat and shown by
/// `control-plane get proxies`; the next snapshot that applies clears the report.
@Suite(.serialized) struct RejectedSnapshotTests {
    static func proxy(_ mesh: DynamicModeTests.Mesh, service: String) async -> [String: Any]? {
        guard let proxies = try? await mesh.server.cli(["get", "proxies", "-o", "json"]), proxies.status == 0,
            let list = try? JSONSerialization.jsonObject(with: Data(proxies.stdout.utf8)) as? [[String: Any]]
        else { return nil }
        return list.first { $0["service"] as? String == service }
    }

    @Test func aSnapshotTheSidecarCannotApplyIsRefusedReportedAndCounted() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        // payments' inbound carries bytes (tcp): it sees no method or path, which only it knows.
        let token = try await mesh.token("payments")
        let (inbound, outbound, admin) = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort())
        let payments = try SidecarProcess(configYAML: """
            service: payments
            inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:1, protocol: tcp }
            outbound: { listen: 127.0.0.1:\(outbound) }
            admin:    { listen: 127.0.0.1:\(admin) }
            controlPlane: { address: \(mesh.server.url), tokenFile: \(token), caFile: ca.pem }
            """, in: mesh.directory, name: "payments")
        defer { payments.stop() }
        #expect(await payments.waitUntilListening(ports: [inbound, admin]), "\(payments.logs)")
        let metricsURL = "http://127.0.0.1:\(admin)/metrics"
        #expect(await eventually(timeout: .seconds(15)) { await Self.proxy(mesh, service: "payments") != nil })
        let running = try #require(metricValue(try await curl([metricsURL]).body, "sidecar_config_version"))
        #expect(metricValue(try await curl([metricsURL]).body, "sidecar_config_rejected_total") == 0)

        // A policy by method: valid for the control plane, impossible on a tcp inbound.
        let applied = try await mesh.server.cli(["apply", "-f", "-"], input: """
            kind: AuthorizationPolicy
            service: payments
            default: deny
            allow: [ { from: [ web ], methods: [ GET ] } ]
            """)
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(await eventually(timeout: .seconds(15)) {
            metricValue((try? await curl([metricsURL]))?.body ?? "", "sidecar_config_rejected_total") == 1
        }, "\(payments.logs)")
        #expect(payments.logs.contains("configuration refused"), "\(payments.logs)")
        // The running configuration stays.
        let metrics = try await curl([metricsURL]).body
        #expect(metricValue(metrics, "sidecar_config_version") == running)
        #expect(!(try await curl(["http://127.0.0.1:\(admin)/config"]).body.contains("AuthorizationPolicy")))

        // Reported with the next heartbeat: `get proxies` shows the version and the reason.
        #expect(await eventually(timeout: .seconds(20)) {
            guard let proxy = await Self.proxy(mesh, service: "payments") else { return false }
            return proxy["rejectedVersion"] as? String != nil
                && (proxy["rejectedReason"] as? String)?.contains("inbound is tcp") == true
        })
        let table = try await mesh.server.cli(["get", "proxies"])
        #expect(table.stdout.contains("REJECTED") && table.stdout.contains("inbound is tcp"), "\(table.stdout)")
        // Refused once, counted once: the control plane does not send it again at once.
        #expect(metricValue(try await curl([metricsURL]).body, "sidecar_config_rejected_total") == 1)

        // A policy the sidecar can apply: taken, and the report clears.
        let fixed = try await mesh.server.cli(["apply", "-f", "-"], input: """
            kind: AuthorizationPolicy
            service: payments
            default: deny
            allow: [ { from: [ web ] } ]
            """)
        #expect(fixed.status == 0, "\(fixed.stderr)")
        #expect(await eventually(timeout: .seconds(15)) {
            (try? await curl(["http://127.0.0.1:\(admin)/config"]))?.body.contains("AuthorizationPolicy") == true
        })
        #expect(await eventually(timeout: .seconds(20)) {
            guard let proxy = await Self.proxy(mesh, service: "payments") else { return false }
            return proxy["rejectedVersion"] == nil && proxy["stale"] as? Bool == false
        })
        #expect(metricValue(try await curl([metricsURL]).body, "sidecar_config_rejected_total") == 1)
    }
}
