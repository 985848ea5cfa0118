import Foundation

/// Runs real programs (`openssl`, `curl`, our own binaries) for interop tests. Output goes to
/// files, so a chatty child never blocks on a full pipe.
public final class ChildProcess: @unchecked Sendable {
    public let process: SpawnedProcess
    private let stdoutURL: URL
    private let stderrURL: URL
    /// Our end of the child's stdin.
    private let stdinWriter: FileHandle

    private static let spawning = NSLock()

    /// A child that exits before reading its stdin must not kill the test process with SIGPIPE.
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    public init(_ arguments: [String], environment: [String: String]? = nil, directory: String? = nil) throws {
        Self.ignoreSIGPIPE
        let scratch = FileManager.default.temporaryDirectory
        stdoutURL = scratch.appendingPathComponent("child-\(UUID().uuidString).out")
        stderrURL = scratch.appendingPathComponent("child-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let merged = environment.map { ProcessInfo.processInfo.environment.merging($0) { $1 } }
        // `env -C dir` changes directory in the child.
        let command = (directory.map { ["-C", $0] } ?? []) + arguments
        // Both ends close on exec, so no other child inherits this stdin (and holds off its EOF);
        // the child gets the read end as its fd 0, and it is closed here after the spawn. One
        // spawn at a time, so none happens between `pipe` and `fcntl`.
        Self.spawning.lock()
        defer { Self.spawning.unlock() }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let readEnd = ends[0]
        stdinWriter = FileHandle(fileDescriptor: ends[1], closeOnDealloc: true)
        process = try SpawnedProcess(
            arguments: command, environment: merged, stdoutPath: stdoutURL.path, stderrPath: stderrURL.path, stdinFD: readEnd)
    }

    /// Writes to the child's stdin; a child that already exited (broken pipe) is not an error
    /// here: tests check its output and status instead.
    public func write(_ text: String) {
        try? stdinWriter.write(contentsOf: Data(text.utf8))
    }

    public func closeInput() {
        try? stdinWriter.close()
    }

    public var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
    public var isRunning: Bool { process.isRunning }

    private func kill() {
        _ = Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits for exit up to `timeout`; kills the child past it. Returns the exit status.
    @discardableResult
    public func wait(timeout: Duration = .seconds(30)) async -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if process.isRunning { kill() }
        return process.terminationStatus
    }

    /// Stops the child at once (SIGKILL: tests that need a graceful stop send SIGTERM themselves
    /// and `wait`), so no test thread ever waits on a child's shutdown.
    public func terminate() {
        if process.isRunning { kill() }
        try? FileManager.default.removeItem(at: stdoutURL)
        try? FileManager.default.removeItem(at: stderrURL)
    }

    /// Runs to completion with `input` on stdin.
    public static func run(
        _ arguments: [String], input: String? = nil, timeout: Duration = .seconds(30), directory: String? = nil
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try ChildProcess(arguments, directory: directory)
        if let input { child.write(input) }
        child.closeInput()
        let status = await child.wait(timeout: timeout)
        let result = (status, child.stdout, child.stderr)
        child.terminate()
        return result
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes: the only way tests wait.
public func eventually(
    timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Ports this test process has handed out: never the same one twice.
private let handedOutPorts = NSLock()
nonisolated(unsafe) private var handedOut: Set<Int> = []

/// A TCP port free on 127.0.0.1 for programs that cannot take port 0. Chosen below the kernel's
/// ephemeral range (32768+), so no outgoing connection of a parallel test can take it meanwhile,
/// and never handed out twice in this process.
public func freeLoopbackPort() throws -> Int {
    for _ in 0..<1000 {
        let port = Int.random(in: 20000..<32000)
        let fresh = handedOutPorts.withLock { handedOut.insert(port).inserted }
        guard fresh, canBind(port: port) else { continue }
        return port
    }
    throw POSIXError(.EADDRINUSE)
}

private func canBind(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var reuse: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
