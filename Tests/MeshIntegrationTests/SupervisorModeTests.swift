import Foundation
import MeshTestSupport
import Testing

/// Supervisor mode, `sidecar --config F -- CMD ARGS…`: the app starts once the sidecar is
/// ready, its output passes through, a SIGTERM to the sidecar reaches it while the outbound
/// still serves its last calls, and its exit status is the sidecar's.
@Suite(.serialized) final class SupervisorModeTests {
    let directory = TemporaryDirectory()

    init() throws {
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try TestPKI().issue(service: "web").write(to: certs, name: "web")
    }

    deinit { directory.remove() }

    func sidecar(
        arguments: [String] = [], _ script: (_ admin: Int, _ outbound: Int) -> String
    ) throws -> (SidecarProcess, admin: Int, outbound: Int) {
        let (inbound, outbound, admin) = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort())
        let process = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(outbound) }
            admin:    { listen: 127.0.0.1:\(admin) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            """, in: directory, name: "web-\(admin)", extraArguments: ["--access-log", "off"] + arguments + ["--", "sh", "-c", script(admin, outbound)])
        return (process, admin, outbound)
    }

    @Test func theAppStartsOnceReadyItsOutputPassesThroughAndItsExitStatusIsTheSidecars() async throws {
        let (sidecar, _, _) = try sidecar { admin, _ in
            "curl -s http://127.0.0.1:\(admin)/ready; echo; echo app-stderr >&2; exit 3"
        }
        defer { sidecar.stop() }
        #expect(await sidecar.process.wait(timeout: .seconds(30)) == 3, "\(sidecar.logs)")
        #expect(sidecar.process.stdout.contains(#"{"status":"ready","source":"file"}"#), "\(sidecar.process.stdout)")
        #expect(sidecar.logs.contains("app-stderr"), "\(sidecar.logs)")
    }

    @Test func aSuccessfulAppEndsTheSidecarWithZero() async throws {
        let (sidecar, _, _) = try sidecar { _, _ in "exit 0" }
        defer { sidecar.stop() }
        #expect(await sidecar.process.wait(timeout: .seconds(30)) == 0, "\(sidecar.logs)")
    }

    @Test func sigtermToTheSidecarReachesTheAppWhileTheOutboundStillServes() async throws {
        // On SIGTERM the app makes one last call through the outbound (no route: the sidecar's
        // own 404 proves the outbound answered), then exits 7.
        let (sidecar, _, _) = try sidecar { _, outbound in
            """
            trap 'code=$(curl -s -o /dev/null -w "%{http_code}" -H "Host: nowhere" http://127.0.0.1:\(outbound)/); echo "app got TERM, last call $code"; exit 7' TERM
            echo app-started
            while :; do sleep 0.05; done
            """
        }
        defer { sidecar.stop() }
        #expect(await eventually(timeout: .seconds(20)) { sidecar.process.stdout.contains("app-started") }, "\(sidecar.logs)")
        sidecar.signal(SIGTERM)
        #expect(await sidecar.process.wait(timeout: .seconds(30)) == 7, "\(sidecar.logs)")
        #expect(sidecar.process.stdout.contains("app got TERM, last call 404"), "\(sidecar.process.stdout)\n\(sidecar.logs)")
    }

    @Test func aCommandThatCannotStartExits127() async throws {
        let (inbound, outbound, admin) = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort())
        let sidecar = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(outbound) }
            admin:    { listen: 127.0.0.1:\(admin) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            """, in: directory, name: "web-missing", extraArguments: ["--", "/nonexistent/app"])
        defer { sidecar.stop() }
        #expect(await sidecar.process.wait(timeout: .seconds(30)) == 127, "\(sidecar.logs)")
        #expect(sidecar.logs.contains("cannot start the app"), "\(sidecar.logs)")
    }

    /// `--log-format` and `--log-level` (swift-log): JSON lines by default, text on request.
    @Test func operationalLogsAreJSONLinesByDefaultAndFollowTheLevel() async throws {
        let (json, _, _) = try sidecar { _, _ in "exit 0" }
        defer { json.stop() }
        #expect(await json.process.wait(timeout: .seconds(30)) == 0, "\(json.logs)")
        let lines = json.logs.split(separator: "\n")
        #expect(lines.contains { $0.contains("sidecar starting") }, "\(json.logs)")
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
            #expect(object?["level"] != nil && object?["message"] != nil, "not a JSON log line: \(line)")
        }

        let (text, _, _) = try sidecar(arguments: ["--log-format", "text", "--log-level", "warning"]) { _, _ in "exit 0" }
        defer { text.stop() }
        #expect(await text.process.wait(timeout: .seconds(30)) == 0, "\(text.logs)")
        #expect(!text.logs.contains("sidecar starting"), "info lines are below --log-level warning: \(text.logs)")

        let refused = try await ChildProcess.run([builtExecutable("sidecar"), "--config", text.configPath, "--log-format", "xml"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("json or text"), "\(refused.stderr)")
    }
}
