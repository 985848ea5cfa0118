import ControlPlane
import Foundation
import MeshAPI
import MeshTestSupport
import SidecarCore

/// The real `control-plane` binary serving on 127.0.0.1:0 in a temporary data dir, and the
/// operator CLI pointed at it with `--data-dir`.
final class ControlPlaneServer: @unchecked Sendable {
    let dataDir: String
    let process: ChildProcess
    let url: String

    /// The built binary: next to the test bundle, or under the package's `.build/debug`.
    static var binary: String {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("control-plane").path
        if FileManager.default.isExecutableFile(atPath: besideTests) { return besideTests }
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory.appendingPathComponent(".build/debug/control-plane").path
            }
            directory.deleteLastPathComponent()
        }
        return "control-plane"
    }

    /// - Parameter listen: `127.0.0.1:0` picks a port; a restart passes the previous one.
    init(dataDir: String, listen: String = "127.0.0.1:0", extraArguments: [String] = []) async throws {
        self.dataDir = dataDir
        process = try ChildProcess(
            [Self.binary, "serve", "--data-dir", dataDir, "--listen", listen] + extraArguments)
        let process = process
        guard await eventually(timeout: .seconds(20), { Self.listeningURL(process.stdout) != nil || !process.isRunning }),
            let url = Self.listeningURL(process.stdout)
        else {
            let output = process.stdout + process.stderr
            process.terminate()
            throw MeshAPIClientError("control-plane serve did not start: \(output)")
        }
        self.url = url
    }

    static func listeningURL(_ output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix("listening on https://") }.map { String($0.dropFirst("listening on ".count)) }
    }

    var caPEM: String { (try? String(contentsOfFile: dataDir + "/ca.pem", encoding: .utf8)) ?? "" }
    var adminToken: String {
        ((try? String(contentsOfFile: dataDir + "/admin.token", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func client(token: String?, clientCertificate: (certificatePEM: String, keyPEM: String)? = nil) throws -> MeshAPIClient {
        try MeshAPIClient(server: url, caPEM: caPEM, token: token, clientCertificate: clientCertificate)
    }

    /// Runs an operator command against this server.
    func cli(_ arguments: [String], input: String? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await ChildProcess.run([Self.binary] + arguments + ["--data-dir", dataDir], input: input)
    }

    /// The port it listens on, from its URL.
    var port: Int { Int(url.split(separator: ":").last ?? "") ?? 0 }

    func kill9() {
        kill(process.process.processIdentifier, SIGKILL)
        process.process.waitUntilExit()
    }

    func stop() {
        process.terminate()  // SIGKILL; graceful-stop tests send SIGTERM themselves
    }
}
