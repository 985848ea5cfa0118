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
    }

    @Test func aTakenPortIsNamedBeforeAnythingStarts() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let binaries = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent().path
        // Something listening where the demo's Prometheus would go (9090 + offset).
        let port = try freeLoopbackPort()
        let blocker = try #require(Self.listen(port: port))
        defer { close(blocker) }
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

    /// Runs scripts/demo.sh with `environment` added to ours, up to `timeout`.
    static func run(environment: [String: String], timeout: Duration) async throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try ChildProcess([packageRoot.appendingPathComponent("scripts/demo.sh").path], environment: environment)
        child.closeInput()
        let status = await child.wait(timeout: timeout)
        let result = (status, child.stdout, child.stderr)
        child.terminate()
        return result
    }

    /// A socket listening on 127.0.0.1:port (nil if that failed); the caller closes it.
    static func listen(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound, Glibc.listen(fd, 8) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }
}
