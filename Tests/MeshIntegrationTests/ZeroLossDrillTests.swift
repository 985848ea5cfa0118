import Foundation
import MeshTestSupport
import Testing

/// The zero-loss drills (issue 14): a real control plane, web and payments sidecars, apps, and
/// web's calls to payments under a bounded request loop while the mesh changes underneath.
/// Each drill asserts that not one request failed while it happened; times (a new instance
/// answering, the split showing) are checked against loose bounds only, since the suite runs
/// on two shared cores beside a hundred others. The drills are
/// independent (one mesh each) and run in parallel; the longest, three certificate rotations
/// of 20 s certificates, bounds the suite's wall time.
@Suite struct ZeroLossDrillTests {
    @Test func scalingPaymentsOneToThreeToOneLosesNoRequest() async throws {
        let drill = try await ZeroLossDrill()
        defer { drill.stop() }
        let load = drill.load()
        #expect(await load.waitFor(20))

        // 1 → 3: each new instance answers within 1 s of registering.
        var added: [ZeroLossDrill.Instance] = []
        for name in ["payments-2", "payments-3"] {
            let instance = try await drill.startPayments(name, version: "v1")
            added.append(instance)
            #expect(await eventually(timeout: .seconds(20)) {
                instance.process.logs.contains("registered with the control plane")
            }, "\(instance.process.logs)")
            let registered = ContinuousClock.now
            #expect(await eventually(timeout: .seconds(10)) { load.outcomes.contains { $0.app == name } })
            let first = try #require(load.outcomes.first { $0.app == name }?.sent)
            // The target is 1 s; the bound is loose because the suite shares two loaded cores.
            #expect(first < registered + .seconds(10), "\(name) first answered \(registered.duration(to: first)) after registering")
        }
        #expect(await load.waitFor(60))

        // 3 → 1: a stopping instance deregisters, web drops it, and from then on it gets nothing.
        for instance in added {
            instance.process.signal(SIGTERM)
            #expect(await eventually(timeout: .seconds(10)) {
                instance.process.logs.contains("deregistered from the control plane")
            }, "\(instance.process.logs)")
            let deregistered = ContinuousClock.now
            #expect(await eventuallySlowly(timeout: .seconds(10)) {
                let clusters = (try? await curl(["http://127.0.0.1:\(drill.web.admin)/clusters"]))?.body ?? "\(instance.inbound)"
                return !clusters.contains("127.0.0.1:\(instance.inbound)")
            })
            let dropped = ContinuousClock.now
            #expect(deregistered.duration(to: dropped) < .seconds(10), "web dropped \(instance.name) \(deregistered.duration(to: dropped)) after it deregistered")
            #expect(await instance.process.process.wait() == 0, "\(instance.process.logs)")
            #expect(await load.waitFor(30))
            let late = load.outcomes.filter { $0.app == instance.name && $0.sent > dropped }
            #expect(late.isEmpty, "\(late.count) requests reached \(instance.name) after web dropped it")
        }
        let servedAfter = load.count
        #expect(await load.waitFor(30))
        let outcomes = await load.stop()
        #expect(outcomes.dropFirst(servedAfter).allSatisfy { $0.app == "payments-1" })
        #expect(outcomes.filter { $0.status != 200 }.isEmpty, "\(outcomes.filter { $0.status != 200 }.prefix(5)) of \(outcomes.count)")
    }

    @Test func aNinetyTenSplitAppliedUnderLoadShowsInTrafficAndOnEveryProxy() async throws {
        let drill = try await ZeroLossDrill()
        defer { drill.stop() }
        let v2 = try await drill.startPayments("payments-2", version: "v2")
        #expect(await v2.process.waitUntilListening(ports: [v2.admin]), "\(v2.process.logs)")
        try await drill.apply(Self.route(v1: 100, v2: 0))
        #expect(await eventuallySlowly(timeout: .seconds(20)) { await drill.everyProxyCurrent(count: 3) })
        let load = drill.load()
        #expect(await load.waitFor(20))

        let before = await drill.currentVersion()
        try await drill.apply(Self.route(v1: 90, v2: 10))
        let applied = ContinuousClock.now
        // The split shows in traffic (v2 had none before).
        #expect(await eventually(timeout: .seconds(30)) { load.outcomes.contains { $0.app == "payments-2" && $0.sent > applied } })
        let firstToV2 = try #require(load.outcomes.first { $0.app == "payments-2" && $0.sent > applied }?.sent)
        // The target is 1 s (bench/propagation.sh measures it); the bound is loose because the
        // suite shares two cores with the HTTP/2, gRPC and gateway suites (10 s was missed once in CI).
        #expect(applied.duration(to: firstToV2) < .seconds(30), "first request to v2 \(applied.duration(to: firstToV2)) after apply")
        // Every proxy reports the new version.
        #expect(await eventuallySlowly(timeout: .seconds(20)) { await drill.everyProxyCurrent(count: 3, atLeast: before + 1) })
        let split = load.count
        #expect(await load.waitFor(600, timeout: .seconds(60)))
        let outcomes = await load.stop()
        let after = outcomes.dropFirst(split)
        let share = Double(after.filter { $0.app == "payments-2" }.count) / Double(after.count)
        // 10 % of 600+: the standard deviation is 1.2 points, so ±5 is about four of them.
        #expect(abs(share - 0.10) <= 0.05, "v2 got \(share) of \(after.count)")
        #expect(outcomes.filter { $0.status != 200 }.isEmpty, "\(outcomes.filter { $0.status != 200 }.prefix(5)) of \(outcomes.count)")
    }

    /// kill -9 of the control plane, down until every sidecar has seen both its watch and its
    /// heartbeat fail (what a longer outage adds is more of the same retries), then back on
    /// the same port and data dir: the data plane never notices, the sidecars reconnect.
    @Test func killingTheControlPlaneAndRestartingItLosesNoRequest() async throws {
        let drill = try await ZeroLossDrill()
        defer { drill.stop() }
        let load = drill.load()
        #expect(await load.waitFor(20))
        #expect(await eventuallySlowly(timeout: .seconds(20)) { await drill.everyProxyCurrent(count: 2) })
        let sidecars = [drill.web!] + [try #require(Self.payments1(drill))]

        drill.mesh.server.kill9()
        let down = ContinuousClock.now
        for sidecar in sidecars {
            #expect(await eventually(timeout: .seconds(20)) {
                sidecar.process.logs.contains("heartbeat failed") && sidecar.process.logs.contains("watch failed")
            }, "\(sidecar.process.logs)")
            #expect(metricValue(try await adminMetrics(sidecar.admin), "sidecar_control_plane_connected") == 0)
        }
        #expect(await load.waitFor(50))
        let port = drill.mesh.server.port
        drill.mesh.server = try await ControlPlaneServer(
            dataDir: drill.mesh.directory.path + "/control-plane", listen: "127.0.0.1:\(port)")
        let outage = down.duration(to: .now)

        for sidecar in sidecars {
            #expect(await eventuallySlowly(timeout: .seconds(20)) {
                metricValue((try? await adminMetrics(sidecar.admin)) ?? "", "sidecar_control_plane_connected") == 1
            }, "\(sidecar.process.logs)")
        }
        #expect(await eventuallySlowly(timeout: .seconds(20)) { await drill.everyProxyCurrent(count: 2) })
        #expect(await load.waitFor(50))
        let outcomes = await load.stop()
        #expect(outcomes.filter { $0.status != 200 }.isEmpty,
                "\(outcomes.filter { $0.status != 200 }.prefix(5)) of \(outcomes.count), control plane down \(outage)")
    }

    /// Certificates valid 20 s, renewed at half-life: three rotations of web and payments under
    /// load, with new connections (bursts of growing concurrency) after each, so handshakes
    /// with the renewed certificates happen on both sides.
    @Test func threeCertificateRotationsUnderLoadLoseNoRequestAndNoHandshake() async throws {
        let drill = try await ZeroLossDrill(serverArguments: ["--certificate-lifetime", "20s"])
        defer { drill.stop() }
        let sidecars = [drill.web!] + [try #require(Self.payments1(drill))]
        let load = drill.load()
        #expect(await load.waitFor(20))
        var bursts: [RequestLoop.Outcome] = []
        for rotation in 1...3 {
            for sidecar in sidecars {
                #expect(await eventually(timeout: .seconds(30)) {
                    occurrences(of: "certificate renewed", in: sidecar.process.logs) >= rotation
                }, "\(sidecar.name): \(sidecar.process.logs)")
            }
            // More requests at once than web's pool holds connections: it opens new ones.
            let burst = RequestLoop(
                port: drill.web.outbound, host: "payments", path: "/slow?ms=50", connections: 2 + 2 * rotation, pace: .zero)
            #expect(await burst.waitFor(4 * (2 + 2 * rotation)))
            bursts += await burst.stop()
        }
        let outcomes = await load.stop()
        #expect(outcomes.filter { $0.status != 200 }.isEmpty, "\(outcomes.filter { $0.status != 200 }.prefix(5)) of \(outcomes.count)")
        #expect(bursts.filter { $0.status != 200 }.isEmpty, "\(bursts.filter { $0.status != 200 }.prefix(5)) of \(bursts.count)")
        for sidecar in sidecars {
            let metrics = try await adminMetrics(sidecar.admin)
            #expect(metricSum(metrics, "sidecar_tls_handshake_errors_total") == 0,
                    "\(sidecar.name): \(metrics.split(separator: "\n").filter { $0.hasPrefix("sidecar_tls_handshake_errors_total") })\n\(sidecar.process.logs)")
        }
        let issued = try await curl(["-k", drill.mesh.server.url + "/metrics"]).body
        #expect((metricValue(issued, "control_plane_certificates_issued_total") ?? 0) >= 8)
    }

    /// A snapshot payments cannot apply (a policy by method on its tcp inbound) arrives while
    /// web calls it: refused, counted, reported; the running configuration keeps serving.
    @Test func aSnapshotRefusedUnderLoadLeavesTheRunningConfigurationServing() async throws {
        let drill = try await ZeroLossDrill(paymentsTCP: true)
        defer { drill.stop() }
        let payments = try #require(Self.payments1(drill))
        let load = drill.load()
        #expect(await load.waitFor(20))
        try await drill.apply("""
            kind: AuthorizationPolicy
            service: payments
            default: deny
            allow: [ { from: [ web ], methods: [ GET ] } ]
            """)
        #expect(await eventuallySlowly(timeout: .seconds(15)) {
            metricValue((try? await adminMetrics(payments.admin)) ?? "", "sidecar_config_rejected_total") == 1
        }, "\(payments.process.logs)")
        #expect(await eventuallySlowly(timeout: .seconds(20)) {
            guard let list = await drill.proxies(), let proxy = list.first(where: { $0["service"] as? String == "payments" })
            else { return false }
            return (proxy["rejectedReason"] as? String)?.contains("inbound is tcp") == true
        })
        #expect(await load.waitFor(50))
        let outcomes = await load.stop()
        #expect(outcomes.filter { $0.status != 200 }.isEmpty, "\(outcomes.filter { $0.status != 200 }.prefix(5)) of \(outcomes.count)")
    }

    static func route(v1: Int, v2: Int) -> String {
        """
        kind: Route
        service: payments
        rules:
          - match: { pathPrefix: / }
            backends: [ { subset: { version: v1 }, weight: \(v1) }, { subset: { version: v2 }, weight: \(v2) } ]
        """
    }

    /// The first payments instance, which `ZeroLossDrill` starts.
    static func payments1(_ drill: ZeroLossDrill) -> ZeroLossDrill.Instance? {
        drill.instance(named: "payments-1")
    }
}
