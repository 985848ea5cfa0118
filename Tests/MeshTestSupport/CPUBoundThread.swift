import Foundation
import Testing

/// One thread of its own for the tests that keep a CPU busy for seconds without awaiting
/// (17 MiB through TLS, the fuzz corpus, thousands of random YAML scalars).
///
/// Swift's cooperative pool has one thread per core, two on the CI machine, and every test and
/// every server a test starts in this process shares it. Two such tests on the pool left no
/// thread for anything else for tens of seconds: a server's bind or an admission waited past its
/// test's deadline (sampled with gdb: `largeWritesArriveIntact` held a pool thread for 45 s).
/// Here they take their turns on this thread instead, and the kernel shares the cores fairly
/// between it and the pool.
public final class CPUBoundThread: TaskExecutor, @unchecked Sendable {
    public static let shared = CPUBoundThread()

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    private init() {
        let thread = Thread { [unowned self] in self.run() }
        thread.name = "cpu-bound tests"
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// `@Suite(.cpuBound)` or `@Test(.cpuBound)`: the test runs on `CPUBoundThread`, off the
/// cooperative pool.
public struct CPUBoundTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await withTaskExecutorPreference(CPUBoundThread.shared) { try await function() }
    }
}

extension Trait where Self == CPUBoundTrait {
    public static var cpuBound: Self { CPUBoundTrait() }
}
