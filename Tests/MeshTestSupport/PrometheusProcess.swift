import Foundation

/// prometheus from PATH or `<package>/.build-tools/prometheus` (scripts/install-deps.sh takes it
/// out of Debian's prometheus package there, without installing the package's service).
public func prometheusPath() -> String? {
    for entry in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let candidate = "\(entry)/prometheus"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    let local = packageRoot.appendingPathComponent(".build-tools/prometheus").path
    return FileManager.default.isExecutableFile(atPath: local) ? local : nil
}

/// A real Prometheus server run as a plain process on a free loopback port, with the given
/// config and its storage in `directory`; queried through its HTTP API with curl.
public final class PrometheusProcess: @unchecked Sendable {
    public let port: Int
    public let process: ChildProcess
    public var url: String { "http://127.0.0.1:\(port)" }

    /// Starts it and waits for `/-/ready`; on `port` when given (a URL handed out before it starts).
    public init(configYAML: String, in directory: TemporaryDirectory, port: Int? = nil) async throws {
        guard let binary = prometheusPath() else { throw POSIXError(.ENOENT) }
        self.port = try port ?? freeLoopbackPort()
        let port = self.port
        let config = directory.path + "/prometheus.yml"
        try configYAML.write(toFile: config, atomically: true, encoding: .utf8)
        process = try ChildProcess([
            binary, "--config.file=\(config)", "--storage.tsdb.path=\(directory.path)/prometheus-data",
            "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
        ])
        let url = "http://127.0.0.1:\(port)"
        let process = process
        let ready = await eventually(timeout: .seconds(30)) {
            guard process.isRunning else { return true }
            return (try? await curl(["\(url)/-/ready"]))?.status == 200
        }
        guard ready, process.isRunning else {
            let logs = process.stderr
            process.terminate()
            throw PrometheusProcessError("prometheus did not become ready: \(logs)")
        }
    }

    /// The decoded JSON of `GET /api/v1/<path>` (its `data` member on success).
    public func api(_ path: String) async throws -> Any {
        let answer = try await curl(["\(url)/api/v1/\(path)"])
        guard let object = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
            object["status"] as? String == "success", let data = object["data"]
        else { throw PrometheusProcessError("\(path): \(answer.status) \(answer.body)") }
        return data
    }

    /// An instant query's samples: each one's labels and value.
    public func query(_ promQL: String) async throws -> [(labels: [String: String], value: Double)] {
        let encoded = promQL.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? promQL
        guard let data = try await api("query?query=\(encoded)") as? [String: Any],
            let result = data["result"] as? [[String: Any]]
        else { throw PrometheusProcessError("query \(promQL): no vector") }
        return result.map { sample in
            let labels = sample["metric"] as? [String: String] ?? [:]
            let value = ((sample["value"] as? [Any])?.last as? String).flatMap(Double.init) ?? .nan
            return (labels, value)
        }
    }

    /// Active scrape targets: their labels and health (`up`, `down`, `unknown`).
    public func targets() async throws -> [(labels: [String: String], health: String, lastError: String)] {
        guard let data = try await api("targets?state=active") as? [String: Any],
            let active = data["activeTargets"] as? [[String: Any]]
        else { return [] }
        return active.map {
            ($0["labels"] as? [String: String] ?? [:], $0["health"] as? String ?? "", $0["lastError"] as? String ?? "")
        }
    }

    public func stop() { process.terminate() }
}

public struct PrometheusProcessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
