import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Supervisor mode (`sidecar --config F -- CMD ARGS…`): runs the app beside the sidecar, as
/// one lifecycle `Service` placed between the outbound (stops after it) and the inbound
/// (stops before it).
///
/// - starts CMD once the sidecar is ready (every listener bound), with the sidecar's own
///   stdin, stdout and stderr, default signal dispositions and an empty signal mask;
/// - passes SIGTERM and SIGINT on to CMD as they arrive, while the group drains the inbound;
/// - on the group's shutdown keeps running until CMD exits, so the outbound it sits above
///   stays up for the app's last calls (SIGTERM is sent if no signal was passed on yet);
/// - when CMD exits by itself (a batch job), returns, which shuts the sidecar down.
///
/// `exitStatus` is CMD's status (128 + N when signal N ended it; 127 when it could not start),
/// which the executable makes its own.
public final class AppSupervisor: Service, Sendable {
    public let command: [String]
    private let readiness: ReadinessState
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var pid: pid_t?
        var exitStatus: Int32?
        var signalled = false
    }

    init(command: [String], readiness: ReadinessState, logger: Logger) {
        precondition(!command.isEmpty, "supervisor mode needs a command")
        self.command = command
        self.readiness = readiness
        self.logger = logger
    }

    /// CMD's exit status once it has exited.
    public var exitStatus: Int32? { state.withLock { $0.exitStatus } }

    public func run() async throws {
        // Started once ready: the app's first outbound call finds the outbound listening.
        while readiness.readiness != .ready {
            if Task.isCancelled || Task.isShuttingDownGracefully || readiness.readiness == .draining { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
        let pid: pid_t
        do {
            pid = try Self.spawn(command)
        } catch {
            logger.error("cannot start the app", metadata: ["command": "\(command)", "error": "\(error)"])
            state.withLock { $0.exitStatus = 127 }
            return
        }
        state.withLock { $0.pid = pid }
        logger.info("app started", metadata: ["command": "\(command)", "pid": "\(pid)"])
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await signal in signals { self.pass(signal.rawValue) }
            }
            await withGracefulShutdownHandler {
                await self.waitForExit(pid)
            } onGracefulShutdown: {
                // Shutdown for another reason than a signal (a failed service): the app stops too.
                if !self.state.withLock({ $0.signalled }) { self.pass(SIGTERM) }
            }
            group.cancelAll()
        }
        logger.info("app exited", metadata: ["status": "\(exitStatus ?? -1)"])
    }

    private func pass(_ signal: Int32) {
        let pid: pid_t? = state.withLock { state in
            guard state.exitStatus == nil else { return nil }
            state.signalled = true
            return state.pid
        }
        guard let pid else { return }
        logger.info("passing a signal to the app", metadata: ["signal": "\(signal)", "pid": "\(pid)"])
        kill(pid, signal)
    }

    /// Polls `waitpid` (no thread parked in a blocking wait); cancellation kills the app, so no
    /// orphan outlives the sidecar.
    private func waitForExit(_ pid: pid_t) async {
        var status: Int32 = 0
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid || (reaped == -1 && errno != EINTR) { break }
            if Task.isCancelled {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        let signal = status & 0x7f
        let code = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        state.withLock { $0.exitStatus = code }
    }

    /// `posix_spawnp` with the sidecar's fds 0-2 and nothing else (NIO's sockets are not
    /// close-on-exec), and the signal state a fresh process expects: the sidecar ignores or
    /// blocks SIGTERM, SIGINT and SIGPIPE for its own handling, and a child inherits both.
    private static func spawn(_ command: [String]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let addCloseFrom { _ = addCloseFrom(&actions, 3) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, command[0], &actions, &attributes, argv, environ)
        guard result == 0 else { throw SpawnError(code: result, command: command[0]) }
        return pid
    }

    struct SpawnError: Error, CustomStringConvertible {
        let code: Int32
        let command: String
        var description: String { "\(command): \(String(cString: strerror(code)))" }
    }

    /// glibc 2.34+'s `posix_spawn_file_actions_addclosefrom_np`, looked up at run time.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()
}
