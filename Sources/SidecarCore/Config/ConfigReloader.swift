#if canImport(Glibc)
import Glibc
#endif
import Logging
import ServiceLifecycle
import UnixSignals

/// Static mode's follower: reloads the config file on SIGHUP or when its modification time
/// changes, through `ConfigApplier`, which swaps the route table and certificates for new
/// requests and connections; a file that does not load or build is logged and ignored.
final class ConfigReloader: Service, Sendable {
    let configPath: String
    let applier: ConfigApplier
    let logger: Logger

    init(configPath: String, applier: ConfigApplier, logger: Logger) {
        self.configPath = configPath
        self.applier = applier
        self.logger = logger
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        // A change of the file's modification time reloads too (checked every second).
        let changes = AsyncStream<Void> { continuation in
            let task = Task {
                var last = Self.modificationTime(configPath)
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    let now = Self.modificationTime(configPath)
                    if now != last {
                        last = now
                        continuation.yield()
                    }
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
        await withTaskGroup(of: Void.self) { group in
            let (merged, continuation) = AsyncStream<Void>.makeStream()
            group.addTask {
                for await _ in signals { continuation.yield() }
            }
            group.addTask {
                for await _ in changes { continuation.yield() }
            }
            group.addTask { await self.reloadLoop(merged) }
            await withGracefulShutdownHandler {
                await group.next()
            } onGracefulShutdown: {
                continuation.finish()
            }
            group.cancelAll()
        }
    }

    static func modificationTime(_ path: String) -> Int64 {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }

    private func reloadLoop(_ triggers: AsyncStream<Void>) async {
        for await _ in triggers {
            do {
                let configuration = try SidecarConfiguration.load(contentsOf: configPath)
                let version = try applier.apply(configuration)
                logger.info("configuration reloaded", metadata: ["version": "\(version)"])
            } catch {
                logger.error("reload refused, keeping the running configuration: \(error)")
            }
        }
    }
}
