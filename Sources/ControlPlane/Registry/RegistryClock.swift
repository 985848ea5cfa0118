import ServiceLifecycle

/// Drives the registry's TTL rules in real time: calls `MeshControlPlane.tick` every
/// `tickInterval` until graceful shutdown. The decisions stay in `RegistryStateMachine`.
public struct RegistryClock: Service {
    let controlPlane: MeshControlPlane

    public init(controlPlane: MeshControlPlane) {
        self.controlPlane = controlPlane
    }

    public func run() async throws {
        let interval = controlPlane.tickInterval
        for await _ in AsyncTimerSequence(interval: interval).cancelOnGracefulShutdown() {
            await controlPlane.tick(now: .now)
        }
    }
}

/// A tick every `interval`, until cancelled.
struct AsyncTimerSequence: AsyncSequence, Sendable {
    typealias Element = Void
    let interval: Duration

    struct AsyncIterator: AsyncIteratorProtocol {
        let interval: Duration
        mutating func next() async -> Void? {
            do {
                try await Task.sleep(for: interval)
                return ()
            } catch {
                return nil
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(interval: interval) }
}
