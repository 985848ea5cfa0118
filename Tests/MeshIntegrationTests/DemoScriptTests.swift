import Foundation
import MeshTestSupport
import Testing

/// `scripts/demo.sh`, the README's first command, run as a user would but on the debug
/// binaries (MESH_BIN, so no release build) and stopping itself once it printed its ready
/// line and Prometheus scraped every target (DEMO_EXIT_AFTER_READY=1): it exits 0 and leaves
/// no process behind.
@Suite(
    .serialized,
    .enabled(if: prometheusPath() != nil, "prometheus not found on PATH or in .build-tools/: run scripts/install-deps.sh"))
struct DemoScriptTests {
    @Test func theDemoComesUpScrapedAndStopsEverythingItStarted() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let binaries = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent().path
        var result: (status: Int32, stdout: String, stderr: String) = (0, "", "")
        // The demo's ports are fixed (moved by an offset); another offset if one is taken.
        for _ in 0..<3 {
            let offset = Int.random(in: 1...40) * 100
            try? FileManager.default.removeItem(atPath: directory.path + "/demo")
            result = try await Self.run(
                environment: [
                    "MESH_BIN": binaries, "DEMO_DIR": directory.path + "/demo", "DEMO_EXIT_AFTER_READY": "1",
                    "DEMO_PORT_OFFSET": String(offset),
                ],
                timeout: .seconds(300))
            if !result.stderr.contains("is already in use") { break }
        }
        #expect(result.status == 0, "stdout:\n\(result.stdout)\nstderr:\n\(result.stderr)")
        let ready = result.stdout.split(separator: "\n").filter { $0.hasPrefix("mesh demo ready: ") }
        #expect(ready.count == 1, "\(result.stdout)")
        #expect(ready.first?.contains("Prometheus http://127.0.0.1:") == true)
        #expect(result.stdout.contains("stat --prometheus"), "the commands to try")
        #expect(result.stdout.contains("[1/5]"), "a progress line per step")

        // Every process it started (it lists them by PID) is gone, not even a zombie.
        let pids = try String(contentsOfFile: directory.path + "/demo/pids", encoding: .utf8)
            .split(separator: "\n").compactMap { Int32($0.split(separator: " ").first ?? "") }
        #expect(pids.count == 12, "control plane, Prometheus, 4 apps, 5 sidecars, the load generator: \(pids)")
        for pid in pids {
            #expect(kill(pid, 0) == -1 && errno == ESRCH, "pid \(pid) is still there")
        }
        // Prometheus scraped each target (its data is there) and the sidecars logged traffic.
        let logs = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/demo/logs")
        #expect(logs.contains("web-sidecar.log") && logs.contains("prometheus.log"), "\(logs)")

        // Join tokens (and everything else it writes) are private to the user.
        for service in ["web", "payments", "ledger", "loadgen"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: directory.path + "/demo/\(service).token")
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(service).token: \(attributes[.posixPermissions] ?? "?")")
        }

        // The commands it prints are plain shell: they parse, and each starts with a program
        // (no shell function that exists only inside the script).
        let commands = Self.printedCommands(result.stdout)
        #expect(commands.count >= 10, "\(result.stdout)")
        for command in commands {
            let parsed = try await ChildProcess.run(["bash", "-n", "-c", command])
            #expect(parsed.status == 0, "\(command): \(parsed.stderr)")
            let program = String(command.prefix { $0 != " " })
            #expect(program == "curl" || FileManager.default.isExecutableFile(atPath: packageRoot.appendingPathComponent(program).path)
                    || FileManager.default.isExecutableFile(atPath: program), "\(command)")
        }
    }

    /// The demo run until it is ready, then every command it printed pasted into a shell from
    /// the repository root, as a user would: each exits 0 while the mesh runs. Then SIGTERM
    /// stops it all, exit 0.
    @Test func thePrintedCommandsWorkWhenPasted() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let binaries = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent().path
        var demo: (child: ChildProcess, offset: Int)?
        for _ in 0..<3 {
            try? FileManager.default.removeItem(atPath: directory.path + "/demo")
            let offset = Int.random(in: 1...40) * 100
            let child = try ChildProcess(
                [packageRoot.appendingPathComponent("scripts/demo.sh").path],
                environment: ["MESH_BIN": binaries, "DEMO_DIR": directory.path + "/demo", "DEMO_PORT_OFFSET": String(offset)])
            child.closeInput()
            _ = await eventually(timeout: .seconds(240)) { child.stdout.contains("Ctrl-C stops everything.") || !child.isRunning }
            if child.isRunning || !child.stderr.contains("is already in use") {
                demo = (child, offset)
                break
            }
        }
        let (child, offset) = try #require(demo)
        defer { child.terminate() }
        try #require(child.isRunning, "stdout:\n\(child.stdout)\nstderr:\n\(child.stderr)")

        let commands = Self.printedCommands(child.stdout)
        #expect(commands.count >= 10, "\(child.stdout)")
        for command in commands {
            let result = try await ChildProcess.run(["bash", "-c", command], directory: packageRoot.path)
            #expect(result.status == 0, "\(command)\nstdout: \(result.stdout)\nstderr: \(result.stderr)")
            if command.contains(" stat ") { #expect(result.stdout.contains("SERVICE"), "\(result.stdout)") }
        }

        // Nothing the demo did (its readiness checks, the commands) failed a TLS handshake on
        // any sidecar: it probes readiness over HTTP, never by connecting to an mTLS port.
        for admin in [15000, 16000, 17000, 18000, 19000] {
            let metrics = try await curl(["http://127.0.0.1:\(admin + offset)/metrics"]).body
            let failed = metrics.split(separator: "\n").filter { $0.hasPrefix("sidecar_tls_handshake_errors_total{") && !$0.hasSuffix(" 0") }
            #expect(metrics.contains("sidecar_tls_handshake_errors_total{"), "\(admin + offset): \(metrics.prefix(300))")
            #expect(failed.isEmpty, "sidecar with admin port \(admin + offset): \(failed)")
        }

        kill(child.process.processIdentifier, SIGTERM)
        #expect(await child.wait(timeout: .seconds(60)) == 0, "stdout:\n\(child.stdout)\nstderr:\n\(child.stderr)")
        let pids = try String(contentsOfFile: directory.path + "/demo/pids", encoding: .utf8)
            .split(separator: "\n").compactMap { Int32($0.split(separator: " ").first ?? "") }
        for pid in pids {
            #expect(kill(pid, 0) == -1 && errno == ESRCH, "pid \(pid) is still there")
        }
    }

    /// The commands the demo prints for the user to paste: the lines between `Try, from …:`
    /// and `Ctrl-C stops everything.`, without their `# comment`, and the ready line's curl.
    static func printedCommands(_ stdout: String) -> [String] {
        var commands: [String] = []
        var inList = false
        for line in stdout.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("mesh demo ready: "), let curl = line.firstMatch(of: /curl [^·]+/) {
                commands.append(String(curl.output).trimmingCharacters(in: .whitespaces))
            } else if line.contains(". Try, from ") {
                inList = true
            } else if line.hasPrefix("Ctrl-C stops everything.") {
                inList = false
            } else if inList {
                let command = line.split(separator: "  #", maxSplits: 1).first ?? ""
                commands.append(command.trimmingCharacters(in: .whitespaces))
            }
        }
        return commands.filter { !$0.isEmpty }
    }

    @Test func aTakenPortIsNamedBeforeAnythingStarts() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let binaries = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent().path
        // Something listening where the demo's Prometheus would go (9090 + offset).
        let taken = try TakenPort()
        defer { taken.release() }
        let port = taken.port
        let offset = port - 9090
        let result = try await Self.run(
            environment: [
                "MESH_BIN": binaries, "DEMO_DIR": directory.path + "/demo", "DEMO_EXIT_AFTER_READY": "1",
                "DEMO_PORT_OFFSET": String(offset),
            ],
            timeout: .seconds(60))
        #expect(result.status == 1)
        #expect(result.stderr.contains("port \(port) on 127.0.0.1 (Prometheus) is already in use"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/demo/pids"), "nothing started")
    }

    /// A sidecar that exits at start (here one that cannot bind) is named with the end of its
    /// log while the demo waits for the chain, not after two minutes of connection refused;
    /// everything else it started is stopped.
    @Test func aProcessThatExitsIsNamedWithItsLog() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let binaries = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent()
        let fake = directory.path + "/bin"
        try FileManager.default.createDirectory(atPath: fake, withIntermediateDirectories: true)
        for tool in ["control-plane", "demo-app"] {
            try FileManager.default.createSymbolicLink(
                atPath: fake + "/" + tool, withDestinationPath: binaries.appendingPathComponent(tool).path)
        }
        try "#!/bin/sh\necho 'sidecar: cannot listen on 127.0.0.1:1: address already in use' >&2\nexit 1\n"
            .write(toFile: fake + "/sidecar", atomically: true, encoding: .utf8)
        chmod(fake + "/sidecar", 0o755)
        var result: (status: Int32, stdout: String, stderr: String) = (0, "", "")
        for _ in 0..<3 {
            try? FileManager.default.removeItem(atPath: directory.path + "/demo")
            result = try await Self.run(
                environment: [
                    "MESH_BIN": fake, "DEMO_DIR": directory.path + "/demo", "DEMO_EXIT_AFTER_READY": "1",
                    "DEMO_PORT_OFFSET": String(Int.random(in: 1...40) * 100),
                ],
                timeout: .seconds(120))
            if !result.stderr.contains("is already in use: stop what listens there") { break }
        }
        #expect(result.status == 1)
        #expect(result.stderr.contains(/demo: web sidecar \(pid \d+\) exited; the end of \S+web-sidecar.log:/), "\(result.stderr)")
        #expect(result.stderr.contains("  sidecar: cannot listen on 127.0.0.1:1: address already in use"), "\(result.stderr)")
        let pids = try String(contentsOfFile: directory.path + "/demo/pids", encoding: .utf8)
            .split(separator: "\n").compactMap { Int32($0.split(separator: " ").first ?? "") }
        #expect(pids.count >= 4, "control plane, Prometheus, web's app and sidecar at least: \(pids)")
        for pid in pids {
            #expect(kill(pid, 0) == -1 && errno == ESRCH, "pid \(pid) is still there")
        }
    }

    /// Runs scripts/demo.sh with `environment` added to ours, up to `timeout`.
    static func run(environment: [String: String], timeout: Duration) async throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try ChildProcess([packageRoot.appendingPathComponent("scripts/demo.sh").path], environment: environment)
        child.closeInput()
        let status = await child.wait(timeout: timeout)
        let result = (status, child.stdout, child.stderr)
        child.terminate()
        return result
    }
}
