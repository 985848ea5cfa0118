import Foundation

/// Runs real programs (`openssl`, `curl`, our own binaries) for interop tests. Output goes to
/// files, so a chatty child never blocks on a full pipe; the files are unlinked as soon as the
/// child has opened them and read back through descriptors held here, so nothing is left in
/// the temp directory, whether the test ends, fails or crashes.
public final class ChildProcess: @unchecked Sendable {
    public let process: SpawnedProcess
    /// Read ends of the child's stdout and stderr files (already unlinked).
    private let stdoutFD: Int32
    private let stderrFD: Int32
    /// Our end of the child's stdin.
    private let stdinWriter: FileHandle

    private static let spawning = NSLock()

    /// A child that exits before reading its stdin must not kill the test process with SIGPIPE.
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    public init(_ arguments: [String], environment: [String: String]? = nil, directory: String? = nil) throws {
        Self.ignoreSIGPIPE
        let scratch = FileManager.default.temporaryDirectory
        let stdoutPath = scratch.appendingPathComponent("child-\(UUID().uuidString).out").path
        let stderrPath = scratch.appendingPathComponent("child-\(UUID().uuidString).err").path
        // Ours to read from; the paths go as soon as the child has its own descriptors.
        let outFD = open(stdoutPath, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        let errFD = outFD < 0 ? -1 : open(stderrPath, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        defer {
            unlink(stdoutPath)
            unlink(stderrPath)
        }
        guard outFD >= 0, errFD >= 0 else {
            let code = errno
            if outFD >= 0 { close(outFD) }
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
        stdoutFD = outFD
        stderrFD = errFD
        let merged = environment.map { ProcessInfo.processInfo.environment.merging($0) { $1 } }
        // `env -C dir` changes directory in the child.
        let command = (directory.map { ["-C", $0] } ?? []) + arguments
        // Both ends close on exec, so no other child inherits this stdin (and holds off its EOF);
        // the child gets the read end as its fd 0, and it is closed here after the spawn. One
        // spawn at a time, so none happens between `pipe` and `fcntl`.
        Self.spawning.lock()
        defer { Self.spawning.unlock() }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            close(outFD)
            close(errFD)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE)
        }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let readEnd = ends[0]
        stdinWriter = FileHandle(fileDescriptor: ends[1], closeOnDealloc: true)
        do {
            // posix_spawn returns once the child has exec'd, so its file actions (opening both
            // paths) are done before the deferred unlinks.
            process = try SpawnedProcess(
                arguments: command, environment: merged, stdoutPath: stdoutPath, stderrPath: stderrPath, stdinFD: readEnd)
        } catch {
            close(outFD)
            close(errFD)
            throw error
        }
    }

    deinit {
        if process.isRunning { kill() }
        close(stdoutFD)
        close(stderrFD)
    }

    /// Writes to the child's stdin; a child that already exited (broken pipe) is not an error
    /// here: tests check its output and status instead.
    public func write(_ text: String) {
        try? stdinWriter.write(contentsOf: Data(text.utf8))
    }

    public func closeInput() {
        try? stdinWriter.close()
    }

    public var stdout: String { Self.readAll(stdoutFD) }
    public var stderr: String { Self.readAll(stderrFD) }

    /// Everything written to the file so far (`pread` from 0: no shared offset, any thread).
    private static func readAll(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(bytes.count)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
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
    /// and `wait`), so no test thread ever waits on a child's shutdown. Its output stays
    /// readable until this object goes.
    public func terminate() {
        if process.isRunning { kill() }
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

/// Polls `condition` every 10 ms (`every`: a condition that starts a process polls less
/// often) until it holds or `timeout` passes: the only way tests wait.
public func eventually(
    timeout: Duration = .seconds(10), every interval: Duration = .milliseconds(10), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// Ports this test process has handed out: never the same one twice.
private let handedOutPorts = NSLock()
nonisolated(unsafe) private var handedOut: Set<Int> = []

/// A TCP port free on 127.0.0.1 for programs that cannot take port 0. Chosen below the kernel's
/// ephemeral range (32768+), so no outgoing connection of a parallel test can take it meanwhile,
/// above the demo's fixed ports (8080...19006 moved by at most 4000, DemoScriptTests), so a
/// parallel test cannot bind one between the demo's check and its sidecar's bind, and never
/// handed out twice in this process.
public func freeLoopbackPort() throws -> Int {
    for _ in 0..<1000 {
        let port = Int.random(in: 24000..<32000)
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
