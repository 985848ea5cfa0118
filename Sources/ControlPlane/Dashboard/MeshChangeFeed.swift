import Synchronization

/// Tells the dashboard that something it shows changed: the mesh version moved (a store or
/// registry change), or a proxy acknowledged a version or reported a refused snapshot (which
/// moves no version). A generation counter and the long polls waiting on it.
///
/// `MeshControlPlane` calls `changed()` in the same actor step as the change, so a page rendered
/// at generation G and a poll `after: G` never miss one. State behind one mutex, never held
/// across an `await`; a waiter is resumed exactly once (by a change, its timeout or cancellation).
public final class MeshChangeFeed: Sendable {
    private struct State: ~Copyable {
        var generation: UInt64 = 0
        var nextID = 0
        var waiters: [Int: CheckedContinuation<UInt64, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public var generation: UInt64 { state.withLock { $0.generation } }

    /// Something visible changed: wakes every waiter with the new generation.
    public func changed() {
        let (generation, waiters) = state.withLock { state in
            state.generation &+= 1
            let waiters = state.waiters
            state.waiters = [:]
            return (state.generation, waiters)
        }
        for waiter in waiters.values { waiter.resume(returning: generation) }
    }

    /// The generation once it differs from `after` (at once if it already does), or the
    /// unchanged generation after `timeout` or when the calling task is cancelled.
    public func wait(after: UInt64, timeout: Duration) async -> UInt64 {
        let id = state.withLock { state in
            state.nextID &+= 1
            return state.nextID
        }
        var timer: Task<Void, Never>?
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<UInt64, Never>) in
                let answer = state.withLock { state -> UInt64? in
                    if state.generation != after || Task.isCancelled { return state.generation }
                    state.waiters[id] = continuation
                    return nil
                }
                if let answer {
                    continuation.resume(returning: answer)
                } else {
                    timer = Task { [weak self] in
                        guard (try? await Task.sleep(for: timeout)) != nil else { return }
                        self?.remove(id)
                    }
                }
            }
        } onCancel: {
            remove(id)
        }
        timer?.cancel()
        return result
    }

    /// Waiters now (tests).
    public var waiterCount: Int { state.withLock { $0.waiters.count } }

    private func remove(_ id: Int) {
        let (waiter, generation) = state.withLock { ($0.waiters.removeValue(forKey: id), $0.generation) }
        waiter?.resume(returning: generation)
    }
}
