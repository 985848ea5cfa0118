import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// The operator CLI against the real server binary: round trips, conflicts, bad input, auth.
@Suite(.serialized) struct ControlPlaneCLITests {
    static let resources = """
        kind: Service
        name: payments
        ---
        kind: Route
        service: payments
        rules:
          - match: { pathPrefix: /pay }
            timeout: 2s
            backends: [ { subset: { version: v1 }, weight: 100 } ]
        ---
        kind: AuthorizationPolicy
        service: payments
        default: deny
        allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]
        """

    @Test func applyGetDeleteRoundTrip() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        let file = directory.path + "/mesh.yaml"
        try Self.resources.write(toFile: file, atomically: true, encoding: .utf8)

        let applied = try await server.cli(["apply", "-f", file])
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(applied.stdout.contains("Route payments applied (resourceVersion 2)"), "\(applied.stdout)")

        let table = try await server.cli(["get", "Routes"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("NAME") && table.stdout.contains("payments"), "\(table.stdout)")

        let yaml = try await server.cli(["get", "route", "payments", "-o", "yaml"])
        #expect(yaml.status == 0)
        let decoded = try MeshResourceDecoder.decodeDocuments(yaml: yaml.stdout)
        #expect(decoded.first?.resourceVersion == "2")
        #expect(decoded.first?.withResourceVersion(nil) == (try MeshResourceDecoder.decodeDocuments(yaml: Self.resources))[1])

        let all = try await server.cli(["get", "all"])
        #expect(all.stdout.contains("AuthorizationPolicy") && all.stdout.contains("Service"), "\(all.stdout)")

        let json = try await server.cli(["get", "authorizationpolicies", "-o", "json"])
        #expect(try MeshResourceDecoder.decodeJSON(json.stdout).map(\.name) == ["payments"])

        let deleted = try await server.cli(["delete", "ROUTE", "payments"])
        #expect(deleted.status == 0, "\(deleted.stderr)")
        let gone = try await server.cli(["get", "route", "payments"])
        #expect(gone.status != 0)
        #expect(gone.stderr.contains("404") && gone.stderr.contains("not found"), "\(gone.stderr)")
        #expect(gone.stderr.split(separator: "\n").count == 1, "one line: \(gone.stderr)")

        // apply from stdin.
        let fromStdin = try await server.cli(["apply", "-f", "-"], input: "kind: Service\nname: web\n")
        #expect(fromStdin.status == 0, "\(fromStdin.stderr)")
        #expect(try await server.cli(["get", "services"]).stdout.contains("web"))
    }

    @Test func staleUpdateIsRefusedWith409() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        _ = try await server.cli(["apply", "-f", "-"], input: "kind: Service\nname: payments\n")
        let fetched = try await server.cli(["get", "service", "payments", "-o", "yaml"])
        #expect(fetched.stdout.contains("resourceVersion: \"1\""), "\(fetched.stdout)")
        // Someone else updates it first.
        _ = try await server.cli(["apply", "-f", "-"], input: "kind: Service\nname: payments\nport: 80\n")
        let stale = try await server.cli(["apply", "-f", "-"], input: fetched.stdout.replacingOccurrences(of: "protocol: http", with: "protocol: tcp"))
        #expect(stale.status != 0)
        #expect(stale.stderr.contains("409") && stale.stderr.contains("stale"), "\(stale.stderr)")
        let stored = try await server.cli(["get", "service", "payments", "-o", "json"])
        #expect(stored.stdout.contains(#""protocol":"http""#))
    }

    @Test func badYAMLGetsAnErrorNamingTheLine() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        let bad = "kind: Route\nservice: payments\nrules:\n  - match: { pathPrefix: /pay }\n    timeout: soon\n"
        let result = try await server.cli(["apply", "-f", "-"], input: bad)
        #expect(result.status != 0)
        #expect(result.stderr.contains("line 5") && result.stderr.contains("rules[0].timeout"), "\(result.stderr)")
        #expect(!result.stderr.contains("Fatal") && result.stderr.split(separator: "\n").count == 1)
        let syntax = try await server.cli(["apply", "-f", "-"], input: "kind: Route\nservice: [oops\n")
        #expect(syntax.status != 0)
        #expect(syntax.stderr.contains("400") && syntax.stderr.contains("line"), "\(syntax.stderr)")
    }

    @Test func wrongOrMissingTokenIs401() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = try await ControlPlaneServer(dataDir: directory.path)
        defer { server.stop() }
        let wrongFile = directory.path + "/wrong.token"
        try "not-the-token\n".write(toFile: wrongFile, atomically: true, encoding: .utf8)
        let wrong = try await ChildProcess.run([
            ControlPlaneServer.binary, "get", "routes", "--server", server.url, "--token-file", wrongFile,
            "--ca-file", directory.path + "/ca.pem",
        ])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("401"), "\(wrong.stderr)")

        let missing = try await server.client(token: nil).send(.GET, "/v1/resources/routes")
        #expect(missing.status == 401)
        #expect(missing.body.hasPrefix("{\"error\":"))
        let metrics = try await server.client(token: nil).send(.GET, "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("control_plane_api_requests_total{route=\"/v1/resources/{kind}\",code=\"401\"} 2"), "\(metrics.body)")
    }

    @Test func firstStartCreatesSecretsAndLaterStartsReuseThem() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let first = try await ControlPlaneServer(dataDir: directory.path)
        #expect(first.process.stdout.contains("created admin token: \(directory.path)/admin.token"), "\(first.process.stdout)")
        let token = first.adminToken, ca = first.caPEM
        kill(first.process.process.processIdentifier, SIGTERM)
        _ = await first.process.wait(timeout: .seconds(20))
        #expect(first.process.process.terminationReason == .exit && first.process.process.terminationStatus == 0,
                "SIGTERM is a graceful shutdown")
        for file in ["ca.key", "admin.token", "mesh.sqlite"] {
            let mode = try FileManager.default.attributesOfItem(atPath: directory.path + "/" + file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file)")
        }
        let second = try await ControlPlaneServer(dataDir: directory.path)
        defer { second.stop() }
        #expect(second.process.stdout.contains("using admin token"))
        #expect(second.adminToken == token && second.caPEM == ca)
        let bundle = try await ChildProcess.run([
            ControlPlaneServer.binary, "ca", "bundle", "--server", second.url, "--ca-file", directory.path + "/ca.pem",
            "--token-file", directory.path + "/admin.token",
        ])
        #expect(bundle.status == 0, "\(bundle.stderr)")
        #expect(bundle.stdout == ca)
    }

    @Test func aTakenListenAddressIsNamedWithItsFlag() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let taken = try TakenPort()
        defer { taken.release() }
        let result = try await ChildProcess.run(
            [ControlPlaneServer.binary, "serve", "--data-dir", directory.path, "--listen", "127.0.0.1:\(taken.port)"])
        #expect(result.status == 1)
        #expect(result.stderr == "control-plane: cannot listen on 127.0.0.1:\(taken.port) (--listen): address already in use\n",
                "\(result.stderr)")
        #expect(!result.stdout.contains("listening on"), "\(result.stdout)")
    }

    @Test func etcdStoreWithoutEndpointsOrWithNoEtcdIsAClearError() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let bare = try await ChildProcess.run([ControlPlaneServer.binary, "serve", "--data-dir", directory.path, "--store", "etcd"])
        #expect(bare.status != 0)
        #expect(bare.stderr.contains("--store etcd needs --etcd-endpoints"), "\(bare.stderr)")
        let port = try freeLoopbackPort()
        let unreachable = try await ChildProcess.run([
            ControlPlaneServer.binary, "serve", "--data-dir", directory.path, "--store", "etcd",
            "--etcd-endpoints", "http://127.0.0.1:\(port)",
        ])
        #expect(unreachable.status != 0)
        #expect(unreachable.stderr.contains("cannot read the store from etcd"), "\(unreachable.stderr)")
        #expect(unreachable.stderr.contains("127.0.0.1:\(port)"), "\(unreachable.stderr)")
    }
}
