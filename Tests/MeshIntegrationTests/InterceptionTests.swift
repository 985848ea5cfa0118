import Foundation
import MeshTestSupport
import Testing

/// Transparent interception for real (DESIGN.md "Transparent interception"), static mode: the
/// hosts of `InterceptionMesh` (A 10.77.0.1 / fd77::1 a client and its sidecar, B 10.77.0.2 /
/// fd77::2 an app on [::]:8080 and its sidecar, C 10.77.0.3 / fd77::3 outside the mesh with a
/// plain app on 8081), rules installed with `sidecar iptables`. Unmodified clients (curl, a raw TCP client) run as an
/// ordinary user (nobody); the sidecars run as root, the `--proxy-uid` the rules exempt.
@Suite(.serialized, .enabled(if: NetworkNamespaces.unavailable == nil, Comment(rawValue: NetworkNamespaces.unavailable ?? "")))
final class InterceptionTests {
    let mesh: InterceptionMesh

    init() async throws {
        mesh = try await InterceptionMesh(hosts: ["a", "b", "c"])
        try await mesh.startApp("b", port: 8080)
        try await mesh.startApp("c", port: 8081)
        try await mesh.startSidecar("b", """
            service: b
            inbound:  { listen: "[::]:15006", app: 127.0.0.1:8080, transparent: true }
            outbound: { listen: 127.0.0.1:15001 }
            admin:    { listen: 127.0.0.1:15000 }
            tls:      { cert: certs/b.pem, key: certs/b.key, trustBundle: certs/ca.pem }
            """)
        try await startSidecarA(unknown: "passthrough")
        try await mesh.iptables("a", ["--apply", "--proxy-uid", "0"])
        try await mesh.iptables("b", ["--apply", "--proxy-uid", "0", "--inbound-ports", "8080"])
    }

    deinit { mesh.stop() }

    /// A's sidecar: knows B (its instance at 10.77.0.2:15006, its IPv6 address as a Service
    /// address) and a route that marks requests.
    func startSidecarA(unknown: String) async throws {
        try await mesh.startSidecar("a", """
            service: a
            inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080 }
            outbound: { listen: 127.0.0.1:15001, transparent: true, unknown: \(unknown) }
            admin:    { listen: 127.0.0.1:15000 }
            tls:      { cert: certs/a.pem, key: certs/a.key, trustBundle: certs/ca.pem }
            resources:
              - { kind: Instance, service: b, address: 10.77.0.2, port: 15006 }
              - { kind: Service, name: b, addresses: [ "fd77::2" ] }
              - kind: Route
                service: b
                rules: [ { match: { pathPrefix: / }, requestHeaders: { set: { x-routed: "yes" } } } ]
            """)
    }

    @Test func interceptedTrafficCrossesTheMeshAndPlainTrafficFromElsewhereDoesNot() async throws {
        // A's curl to B's app address: redirected to A's sidecar, mTLS to B's, routed by A's Route.
        let answer = try await mesh.curl(from: "a", "http://10.77.0.2:8080/hello")
        #expect(answer.status == 0)
        #expect(answer.body == "app=b caller=a routed=yes\n")
        // A raw TCP client: an L4 tunnel (ALPN mesh-tcp) to B's app.
        #expect(try await mesh.tcpEcho(from: "a", to: "10.77.0.2", port: 8080) == "ping-over-the-mesh")
        // The outbound port used explicitly still works: loopback is not redirected, and a
        // connection with no other original destination is the ordinary outbound proxy.
        let explicit = try await mesh.hosts.run("a", mesh.asUser([
            "curl", "-sS", "--max-time", "10", "-H", "Host: b", "http://127.0.0.1:15001/explicit",
        ]))
        #expect(explicit.stdout == "app=b caller=a routed=yes\n", "\(explicit.stderr)")
        // h2c with prior knowledge, intercepted: the outbound's HTTP/2 path, to the original
        // destination's service (its :authority, 10.77.0.2:8080, names none).
        let h2 = try await mesh.hosts.run("a", mesh.asUser([
            "curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "-w", " %{http_version}", "http://10.77.0.2:8080/h2",
        ]))
        #expect(h2.stdout == "app=b caller=a routed=yes\n 2", "\(h2.stderr)")

        let a = try await mesh.metrics("a")
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-http"]) == 2)
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-tcp"]) == 1)
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "passthrough"]) == 0)
        #expect(metricValue(a, "sidecar_requests_total", ["direction": "outbound", "peer": "b", "code": "200"]) == 3)
        let b = try await mesh.metrics("b")
        #expect(metricValue(b, "sidecar_requests_total", ["direction": "inbound", "peer": "a", "code": "200"]) == 3)
        #expect((metricValue(b, "sidecar_bytes_total", ["direction": "inbound", "peer": "a", "flow": "request"]) ?? 0) > 0)

        // C is not in the mesh: its connection to B's app lands on B's inbound, which wants mTLS.
        let plain = try await mesh.curl(from: "c", "http://10.77.0.2:8080/hello")
        #expect(plain.status != 0 && !plain.body.contains("app=b"), "\(plain)")
        #expect(try await mesh.tcpEcho(from: "c", to: "10.77.0.2", port: 8080) == "")
        let refused = metricValue(try await mesh.metrics("b"), "sidecar_tls_handshake_errors_total", ["direction": "inbound", "reason": "not-tls"])
        #expect((refused ?? 0) >= 1, "B's inbound refused C's plain bytes")
    }

    @Test func anAddressOutsideTheMeshPassesThroughOrIsRefusedUnderRegistryOnly() async throws {
        #expect(try await mesh.curl(from: "a", "http://10.77.0.3:8081/").body == "app=c caller=- routed=-\n")
        #expect(try await mesh.curl(from: "a", "http://[fd77::3]:8081/").body == "app=c caller=- routed=-\n")
        #expect(metricValue(try await mesh.metrics("a"), "sidecar_intercepted_connections_total", ["outcome": "passthrough"]) == 2)

        try await startSidecarA(unknown: "registry-only")
        let refused = try await mesh.curl(from: "a", "http://10.77.0.3:8081/")
        #expect(refused.status != 0 && refused.body.isEmpty, "\(refused)")
        #expect(metricValue(try await mesh.metrics("a"), "sidecar_intercepted_connections_total", ["outcome": "refused"]) == 1)
        #expect(try await mesh.curl(from: "a", "http://10.77.0.2:8080/").body == "app=b caller=a routed=yes\n", "the mesh still works")
    }

    @Test func dryRunChangesNothingAndCleanupRestoresDirectTraffic() async throws {
        let before = try await mesh.hosts.run("a", ["nft", "list", "ruleset"]).stdout
        let printed = try await mesh.iptables("a", ["--dry-run", "--proxy-uid", "0", "--exclude-outbound-ports", "22"])
        #expect(printed.contains("table ip mesh_intercept {") && printed.contains("tcp dport 22 return"))
        #expect(printed.contains("table ip6 mesh_intercept {") && printed.contains("ip6 daddr ::1/128 return"))
        #expect(try await mesh.hosts.run("a", ["nft", "list", "ruleset"]).stdout == before, "--dry-run changed the rules")
        #expect(!before.contains("dport 22"))

        try await mesh.iptables("a", ["--apply", "--proxy-uid", "0"])  // again: the same rules, once
        #expect(try await mesh.hosts.run("a", ["nft", "list", "ruleset"]).stdout == before, "--apply twice is --apply once")

        for host in ["a", "b"] {
            try await mesh.iptables(host, ["--cleanup"])
            #expect(try await mesh.hosts.run(host, ["nft", "list", "ruleset"]).stdout.isEmpty, "rules left on \(host)")
            try await mesh.iptables(host, ["--cleanup"])  // nothing to remove: still fine
        }
        // Direct again: A's and C's requests reach B's app without the mesh.
        #expect(try await mesh.curl(from: "a", "http://10.77.0.2:8080/").body == "app=b caller=- routed=-\n")
        #expect(try await mesh.curl(from: "c", "http://10.77.0.2:8080/").body == "app=b caller=- routed=-\n")
        #expect(try await mesh.curl(from: "a", "http://[fd77::2]:8080/").body == "app=b caller=- routed=-\n")
        #expect(try await mesh.curl(from: "c", "http://[fd77::2]:8080/").body == "app=b caller=- routed=-\n")
        #expect(metricValue(try await mesh.metrics("a"), "sidecar_intercepted_connections_total", ["outcome": "mesh-http"]) == 0)
    }

    @Test func ipv6IsInterceptedLikeIPv4() async throws {
        // A's curl to B's IPv6 address: redirected to A's sidecar at [::1]:15001, the original
        // destination read with IP6T_SO_ORIGINAL_DST, fd77::2 is Service b: mTLS to B's sidecar.
        let answer = try await mesh.curl(from: "a", "http://[fd77::2]:8080/v6")
        #expect(answer.status == 0 && answer.body == "app=b caller=a routed=yes\n", "\(answer)")
        #expect(try await mesh.tcpEcho(from: "a", to: "fd77::2", port: 8080) == "ping-over-the-mesh")
        let a = try await mesh.metrics("a")
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-http"]) == 1)
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-tcp"]) == 1)
        // C's plain IPv6 connection to B's app lands on B's inbound ([::]:15006), which wants mTLS.
        let plain = try await mesh.curl(from: "c", "http://[fd77::2]:8080/v6")
        #expect(plain.status != 0 && !plain.body.contains("app=b"), "\(plain)")
        let refused = metricValue(try await mesh.metrics("b"), "sidecar_tls_handshake_errors_total", ["direction": "inbound", "reason": "not-tls"])
        #expect((refused ?? 0) >= 1, "B's inbound refused C's plain bytes")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip6tables-restore"),
                   "iptables not installed (Debian iptables; scripts/install-deps.sh installs it)"))
    func withoutNftTheRulesGoInIptablesChainsOfOurOwn() async throws {
        // A PATH with iptables and ip6tables but no nft: `sidecar iptables` falls back to them.
        let bin = mesh.directory.url.appendingPathComponent("bin-without-nft")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        for tool in ["iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"] {
            try FileManager.default.createSymbolicLink(atPath: bin.appendingPathComponent(tool).path, withDestinationPath: "/usr/sbin/" + tool)
        }
        for host in ["a", "b"] { try await mesh.iptables(host, ["--cleanup"]) }
        let printed = try await mesh.iptables("a", ["--dry-run", "--proxy-uid", "0"], path: bin.path)
        #expect(printed.contains("-A MESH_OUTPUT -p tcp -j REDIRECT --to-ports 15001\n") && !printed.contains("table ip"), "\(printed)")
        for _ in 0..<2 {  // applying twice is applying once
            try await mesh.iptables("a", ["--apply", "--proxy-uid", "0"], path: bin.path)
            try await mesh.iptables("b", ["--apply", "--proxy-uid", "0", "--inbound-ports", "8080"], path: bin.path)
        }
        for save in ["iptables-save", "ip6tables-save"] {
            let rules = try await mesh.hosts.run("b", [save, "-t", "nat"]).stdout
            #expect(rules.components(separatedBy: "-A OUTPUT -p tcp -j MESH_OUTPUT\n").count == 2, "\(save): \(rules)")
            #expect(rules.components(separatedBy: "-A PREROUTING -p tcp -j MESH_PREROUTING\n").count == 2, "\(save): \(rules)")
        }
        #expect(!(try await mesh.hosts.run("a", ["nft", "list", "tables"]).stdout.contains("mesh_intercept")))

        #expect(try await mesh.curl(from: "a", "http://10.77.0.2:8080/ipt").body == "app=b caller=a routed=yes\n")
        #expect(try await mesh.curl(from: "a", "http://[fd77::2]:8080/ipt6").body == "app=b caller=a routed=yes\n")
        let plain = try await mesh.curl(from: "c", "http://10.77.0.2:8080/")
        #expect(plain.status != 0 && !plain.body.contains("app=b"), "\(plain)")

        for host in ["a", "b"] {
            try await mesh.iptables(host, ["--cleanup"], path: bin.path)
            for save in ["iptables-save", "ip6tables-save"] {
                let rules = try await mesh.hosts.run(host, [save, "-t", "nat"]).stdout
                #expect(!rules.contains("MESH_"), "\(save) on \(host): \(rules)")
            }
        }
        #expect(try await mesh.curl(from: "a", "http://10.77.0.2:8080/").body == "app=b caller=- routed=-\n")
        #expect(try await mesh.curl(from: "a", "http://[fd77::2]:8080/").body == "app=b caller=- routed=-\n")
    }
}

/// Interception in dynamic mode: the control plane (in B) tells A's sidecar where B's instance
/// is (B registered it) and which virtual IP the Service `b` has; both are intercepted.
@Suite(.serialized, .enabled(if: NetworkNamespaces.unavailable == nil, Comment(rawValue: NetworkNamespaces.unavailable ?? "")))
final class InterceptionDynamicModeTests {
    let mesh: InterceptionMesh

    init() async throws {
        mesh = try await InterceptionMesh(hosts: ["a", "b"])
    }

    deinit { mesh.stop() }

    @Test func aRegisteredInstanceAndAServicesVirtualIPAreIntercepted() async throws {
        let dataDir = mesh.directory.path + "/control-plane"
        let server = try mesh.start("b", [ControlPlaneServer.binary, "serve", "--data-dir", dataDir, "--listen", "0.0.0.0:15010"])
        let listening = await eventually(timeout: .seconds(20)) { server.stdout.contains("listening on") || !server.isRunning }
        try #require(listening && server.isRunning, "control-plane serve: \(server.stdout) \(server.stderr)")
        try FileManager.default.copyItem(atPath: dataDir + "/ca.pem", toPath: mesh.directory.path + "/ca.pem")
        @discardableResult
        func cli(_ arguments: [String], input: String? = nil) async throws -> String {
            let result = try await mesh.hosts.run("b", [ControlPlaneServer.binary] + arguments + ["--data-dir", dataDir], input: input)
            try #require(result.status == 0, "control-plane \(arguments): \(result.stderr)")
            return result.stdout
        }
        try await cli(["apply", "-f", "-"], input: "kind: Service\nname: b\naddresses: [ 10.96.0.10 ]\n")
        for (host, address) in [("b", "10.77.0.2"), ("a", "10.77.0.1")] {
            try await cli(["token", "create", "--service", host, "--ttl", "1h"])
                .write(toFile: mesh.directory.path + "/\(host).token", atomically: true, encoding: .utf8)
            try await mesh.startSidecar(host, """
                service: \(host)
                inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080, transparent: \(host == "b") }
                outbound: { listen: 127.0.0.1:15001, transparent: \(host == "a") }
                admin:    { listen: 127.0.0.1:15000 }
                controlPlane: { address: https://10.77.0.2:15010, tokenFile: \(host).token, caFile: ca.pem, advertise: \(address):15006 }
                """)
        }
        try await mesh.startApp("b", port: 8080)
        try await mesh.iptables("a", ["--apply", "--proxy-uid", "0"])
        try await mesh.iptables("b", ["--apply", "--proxy-uid", "0", "--inbound-ports", "8080"])
        // The virtual IP needs a route for the app's connect to start (then the rules take it).
        #expect(try await mesh.hosts.run("a", ["ip", "route", "add", "10.96.0.0/16", "dev", "eth0"]).status == 0)

        // B's instance reaches A's snapshot once B registered: then B's address is service b.
        let reached = await eventually(timeout: .seconds(20), every: .milliseconds(200)) {
            (try? await self.mesh.curl(from: "a", "http://10.77.0.2:8080/"))?.body == "app=b caller=a routed=-\n"
        }
        #expect(reached, "\(mesh.sidecars["a"]?.logs ?? "")")
        #expect(try await mesh.curl(from: "a", "http://10.96.0.10:8080/x").body == "app=b caller=a routed=-\n")
        #expect(try await mesh.tcpEcho(from: "a", to: "10.96.0.10", port: 8080) == "ping-over-the-mesh")
        let a = try await mesh.metrics("a")
        #expect((metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-http"]) ?? 0) >= 2)
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-tcp"]) == 1)
    }
}

/// `sidecar iptables`' command line, without a kernel: `--dry-run` prints the rules, bad
/// options are refused with the option named.
@Suite struct InterceptionCommandLineTests {
    func iptables(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await ChildProcess.run([builtExecutable("sidecar"), "iptables"] + arguments)
    }

    @Test func dryRunPrintsTheRulesOfItsOptions() async throws {
        let printed = try await iptables([
            "--dry-run", "--proxy-uid", "1337", "--inbound-ports", "8080", "--exclude-outbound-cidrs", "10.96.0.1/12",
            "--exclude-outbound-ports", "22,5432", "--outbound-port", "16001",
        ])
        #expect(printed.status == 0, "\(printed.stderr)")
        for line in ["meta skuid 1337 return", "ip daddr 10.96.0.0/12 return", "tcp dport { 22, 5432 } return",
                     "meta l4proto tcp redirect to :16001", "tcp dport 8080 redirect to :15006"] {
            #expect(printed.stdout.contains("\t\t\(line)\n"), "\(line) in \(printed.stdout)")
        }
    }

    @Test func badOptionsAreRefusedNamingTheOption() async throws {
        for (arguments, message) in [
            (["--dry-run"], "--proxy-uid is required"),
            (["--apply", "--cleanup", "--proxy-uid", "0"], "give exactly one of --apply, --dry-run, --cleanup"),
            (["--dry-run", "--proxy-uid", "0", "--inbound-ports", "http"], "--inbound-ports: \"http\" is not a TCP port"),
            (["--dry-run", "--proxy-uid", "0", "--exclude-outbound-cidrs", "10.0.0.0/40"], "--exclude-outbound-cidrs: \"10.0.0.0/40\""),
        ] {
            let result = try await iptables(arguments)
            #expect(result.status != 0)
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
    }
}

/// gRPC from an unmodified grpcio client, intercepted: h2c with prior knowledge to an address
/// (A 10.77.0.1 the client and its sidecar, G 10.77.0.2 a grpcio app behind its sidecar,
/// `inbound.protocol: grpc`); its `:authority` is that address, so the original destination's
/// service routes it.
@Suite(.serialized, .enabled(if: NetworkNamespaces.unavailable == nil && GRPCMesh.python != nil,
                             Comment(rawValue: NetworkNamespaces.unavailable ?? "no .venv with grpcio (scripts/install-deps.sh)")))
final class InterceptionGRPCTests {
    let mesh: InterceptionMesh

    init() async throws {
        mesh = try await InterceptionMesh(hosts: ["a", "g"])
    }

    deinit { mesh.stop() }

    @Test func aGRPCCallToAServicesAddressReachesItsAppOverMTLS() async throws {
        let python = try #require(GRPCMesh.python)
        let app = try mesh.start("g", [python, GRPCMesh.peer, "serve", "--port", "50051", "--name", "g"])
        let ready = await eventually(timeout: .seconds(30)) { app.stdout.contains("\"ready\"") }
        try #require(ready, "grpc app: \(app.stderr)")
        try await mesh.startSidecar("g", """
            service: g
            inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:50051, protocol: grpc }
            outbound: { listen: 127.0.0.1:15001 }
            admin:    { listen: 127.0.0.1:15000 }
            tls:      { cert: certs/g.pem, key: certs/g.key, trustBundle: certs/ca.pem }
            """)
        try await mesh.startSidecar("a", """
            service: a
            inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080 }
            outbound: { listen: 127.0.0.1:15001, transparent: true }
            admin:    { listen: 127.0.0.1:15000 }
            tls:      { cert: certs/a.pem, key: certs/a.key, trustBundle: certs/ca.pem }
            resources:
              - { kind: Instance, service: g, address: 10.77.0.2, port: 15006 }
            """)
        try await mesh.iptables("a", ["--apply", "--proxy-uid", "0"])

        let result = try await mesh.hosts.run("a", mesh.asUser([
            python, GRPCMesh.peer, "call", "--target", "10.77.0.2:50051", "--authority", "10.77.0.2:50051", "--timeout", "20", "unary",
        ]))
        let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let call = try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(result)")
        #expect(call["code"] as? String == "OK", "\(call)")
        #expect(call["instance"] as? String == "g")
        #expect(call["caller"] as? String == "a", "G's app saw A's verified identity")
        let metrics = try await mesh.metrics("a")
        #expect(metricValue(metrics, "sidecar_intercepted_connections_total", ["outcome": "mesh-http"]) == 1)
        #expect(metricValue(metrics, "sidecar_grpc_responses_total", ["direction": "outbound", "peer": "g", "grpc_status": "0"]) == 1)
    }
}
