import Foundation

/// A child started with `posix_spawn`, in place of Foundation's `Process`: on Linux,
/// `Process.run()` intermittently crashes the test process (an over-read of `/proc/self/fd`
/// dirents in swift-corelibs-foundation's `findMaximumOpenFromProcSelfFD`, fixed upstream in
/// swift-corelibs-foundation#5472, not in Swift 6.3.1), and this suite starts hundreds.
///
/// Only what the tests use: pid, running, exit status and reason, blocking wait. The exit
/// status is reaped once (under a lock) and kept.
public final class SpawnedProcess: @unchecked Sendable {
    public enum TerminationReason: Sendable, Equatable { case exit, uncaughtSignal }

    public let processIdentifier: Int32
    private let lock = NSLock()
    private var status: Int32?

    /// Runs `arguments` through `/usr/bin/env` (PATH lookup, `-C dir`), with stdout and stderr
    /// appended to files and stdin from `stdinFD` (closed here after the spawn).
    init(arguments: [String], environment: [String: String]?, stdoutPath: String, stderrPath: String, stdinFD: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinFD, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        // The child gets fds 0-2 and nothing else. NIO opens its sockets without CLOEXEC, so
        // otherwise every child (curl, a sidecar living as long as its test) kept a copy of
        // each connection the test process had open at that moment: closing one here then
        // sends no FIN until the child exits, and the peer never learns of the hang-up (a
        // long-poll watcher kept counting; APIServerTests flaked whenever a concurrent test
        // spawned a child at the wrong moment).
        Self.closeInheritedDescriptors(&actions)
        // The child starts with no signal blocked and the usual signals at their defaults, as
        // from a shell. Otherwise it inherits the spawning thread's mask (Dispatch's worker
        // threads block SIGTERM and most others) and this process's ignored SIGPIPE: a shell
        // script then never sees the SIGTERM a test sends, and cannot trap it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = (["/usr/bin/env"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result: Int32
        if let environment {
            let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { envp.forEach { free($0) } }
            result = posix_spawn(&pid, "/usr/bin/env", &actions, &attributes, argv, envp)
        } else {
            result = posix_spawn(&pid, "/usr/bin/env", &actions, &attributes, argv, environ)
        }
        close(stdinFD)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EINVAL) }
        processIdentifier = pid
    }

    /// glibc 2.34+'s `posix_spawn_file_actions_addclosefrom_np` (not visible through Swift's
    /// Glibc module): closes every fd from 3 up in the child, atomically with the spawn.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let addCloseFrom, addCloseFrom(&actions, 3) == 0 { return }
        // An older libc: close what is open now (a socket opened meanwhile by another thread
        // may still slip through).
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }

    public var isRunning: Bool { reap(blocking: false) == nil }

    /// Blocks until the child exits.
    public func waitUntilExit() { _ = reap(blocking: true) }

    /// The exit code, or the signal that ended it; 0 while running.
    public var terminationStatus: Int32 {
        guard let status = reap(blocking: false) else { return 0 }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : status & 0x7f
    }

    public var terminationReason: TerminationReason {
        guard let status = reap(blocking: false) else { return .exit }
        return status & 0x7f == 0 ? .exit : .uncaughtSignal
    }

    private func reap(blocking: Bool) -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        while true {
            let result = waitpid(processIdentifier, &raw, blocking ? 0 : WNOHANG)
            if result == processIdentifier {
                status = raw
                return raw
            }
            if result == -1 && errno == EINTR { continue }
            return nil
        }
    }
}
