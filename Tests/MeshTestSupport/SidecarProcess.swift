import Foundation

/// The package root, found from this file's path (Tests/MeshTestSupport/…).
public let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A built executable of this package (`swift build --build-tests` builds them all).
public func builtExecutable(_ name: String) -> String {
    let debug = packageRoot.appendingPathComponent(".build/debug/\(name)").path
    return debug
}

/// A real `sidecar` process started on a config file; its stdout (access log) and stderr
/// are kept for assertions.
public final class SidecarProcess: @unchecked Sendable {
    public let process: ChildProcess
    public let configPath: String

    /// - Parameter launcher: what runs the sidecar, e.g. `ip netns exec NS` (nothing: run it here).
    public init(
        configYAML: String, in directory: TemporaryDirectory, name: String, extraArguments: [String] = [],
        launcher: [String] = []
    ) throws {
        configPath = directory.url.appendingPathComponent("\(name).yaml").path
        try configYAML.write(toFile: configPath, atomically: true, encoding: .utf8)
        process = try ChildProcess(
            launcher + [builtExecutable("sidecar"), "--config", configPath, "--workers", "1"] + extraArguments)
    }

    /// Waits until the ports accept connections (the readiness signal), or fails.
    public func waitUntilListening(ports: [Int], timeout: Duration = .seconds(20)) async -> Bool {
        await eventually(timeout: timeout) {
            guard process.isRunning else { return true }
            return ports.allSatisfy { canConnect(port: $0) }
        } && process.isRunning
    }

    public func signal(_ signal: Int32) { kill(process.process.processIdentifier, signal) }
    public var accessLog: String { process.stdout }
    public var logs: String { process.stderr }
    public func stop() { process.terminate() }
}

/// Whether something accepts TCP connections on 127.0.0.1:port right now.
public func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// One HTTP exchange made with `curl`: status, headers (lower-cased names) and body.
public struct CurlResult: Sendable {
    public let status: Int
    /// The protocol of the answer as curl printed it: `HTTP/1.1`, `HTTP/2`.
    public let version: String
    public let headers: [String: String]
    public let body: String
    public let stderr: String
}

public func curl(_ arguments: [String], timeout: Duration = .seconds(30)) async throws -> CurlResult {
    let result = try await ChildProcess.run(["curl", "-sS", "-i", "--max-time", "20"] + arguments, timeout: timeout)
    // With -i, every response head (1xx too) precedes the body; take the last head.
    var text = result.stdout
    var head = ""
    while let range = text.range(of: "\r\n\r\n"), text.hasPrefix("HTTP/") {
        head = String(text[..<range.lowerBound])
        text = String(text[range.upperBound...])
        if !head.hasPrefix("HTTP/1.1 1") { break }
    }
    let lines = head.components(separatedBy: "\r\n")
    let status = lines.first.flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } } ?? 0
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let version = lines.first.flatMap { $0.split(separator: " ").first.map(String.init) } ?? ""
    return CurlResult(status: status, version: version, headers: headers, body: text, stderr: result.stderr)
}

/// The value of the Prometheus sample of `name` in `exposition` whose labels include all of
/// `labels`; nil when there is no such sample (a series never created, a renamed metric or
/// label). Compare it to a number: `metricValue(…) == 0` fails when the series is missing.
public func metricValue(_ exposition: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(name) {
        let rest = line.dropFirst(name.count)
        guard rest.first == "{" || rest.first == " " else { continue }
        let labelText = rest.first == "{" ? String(rest.dropFirst().prefix { $0 != "}" }) : ""
        guard labels.allSatisfy({ labelText.contains("\($0.key)=\"\($0.value)\"") }) else { continue }
        if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { return value }
    }
    return nil
}

/// "Absent or zero", said explicitly: for a labelled counter whose series only appears once it
/// first moves (`sidecar_retries_total{peer,reason}`), the sample's value, or 0 when the family
/// is declared in the exposition (`# TYPE name`) but that series does not exist yet. Nil when
/// the family itself is missing, so a renamed metric still fails `== 0`.
public func metricValueOrZero(_ exposition: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
    if let value = metricValue(exposition, name, labels) { return value }
    let declared = exposition.split(separator: "\n").contains { $0.hasPrefix("# TYPE \(name) ") }
    return declared ? 0 : nil
}

/// A sidecar's admin `/metrics` exposition.
public func adminMetrics(_ port: Int) async throws -> String {
    try await curl(["http://127.0.0.1:\(port)/metrics"]).body
}

/// promtool from PATH or `<package>/.build-tools/promtool` (scripts/install-deps.sh puts it there).
public func promtoolPath() -> String? {
    for entry in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let candidate = "\(entry)/promtool"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    let local = packageRoot.appendingPathComponent(".build-tools/promtool").path
    return FileManager.default.isExecutableFile(atPath: local) ? local : nil
}
