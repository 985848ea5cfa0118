import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// `maxConnections` / `maxPendingRequests` with Envoy's meaning: connect under the cap,
    /// wait (FIFO) at it, refuse at once when the waiting room is full too.
    @Suite struct ConnectionPoolStateMachineTests {
        typealias Pool = ConnectionPoolStateMachine<String>

        static func pool(connections: Int, pending: Int, loopCount: Int = 1) -> Pool {
            Pool(
                CircuitBreakerThresholds(
                    maxConnections: connections, maxPendingRequests: pending, maxRequests: 1024, maxRetries: 3),
                loopCount: loopCount)
        }

        @Test func connectsUnderTheCapThenWaitsThenRejects() {
            var pool = Self.pool(connections: 2, pending: 2)
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .connect)
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .connect)
            #expect(pool.open == 2)
            #expect(!pool.isOpen)
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .wait(id: 0))
            #expect(pool.lease("b", idleHere: false, idleElsewhere: false) == .wait(id: 1))
            #expect(pool.isOpen)
            #expect(pool.takeOpenChange() == true)
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .reject(.pendingRequests))
            #expect(pool.pending == 2)
            // An idle connection to the wanted endpoint needs no slot.
            #expect(pool.lease("a", idleHere: true, idleElsewhere: false) == .useIdle)
        }

        @Test func freedConnectionsGoToTheOldestWaiter() {
            var pool = Self.pool(connections: 2, pending: 4)
            _ = pool.lease("a", idleHere: false, idleElsewhere: false)
            _ = pool.lease("b", idleHere: false, idleElsewhere: false)
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .wait(id: 0))
            #expect(pool.lease("b", idleHere: false, idleElsewhere: false) == .wait(id: 1))
            #expect(pool.lease("c", idleHere: false, idleElsewhere: false) == .wait(id: 2))
            // A released connection to the oldest waiter's endpoint is handed over as is.
            #expect(pool.released("a") == .handOver(id: 0))
            // One to another endpoint is closed and its slot used for the waiter's endpoint.
            #expect(pool.released("a") == .closeAndConnect(id: 1, endpoint: "b"))
            // A closed connection's slot connects for the next waiter.
            #expect(pool.closed() == .connect(id: 2, endpoint: "c"))
            #expect(pool.open == 2)
            #expect(pool.pending == 0)
            // Nobody waits: released ones go idle, closed ones free their slot.
            #expect(pool.released("c") == .none)
            #expect(pool.closed() == .none)
            #expect(pool.open == 1)
            #expect(pool.lease("d", idleHere: false, idleElsewhere: false) == .connect)
        }

        @Test func atTheCapAnIdleConnectionElsewhereIsRecycled() {
            var pool = Self.pool(connections: 1, pending: 0)
            _ = pool.lease("a", idleHere: false, idleElsewhere: false)
            // The only connection is idle, to "a": a request for "b" takes its slot.
            #expect(pool.lease("b", idleHere: false, idleElsewhere: true) == .closeIdleAndConnect)
            #expect(pool.open == 1)
            // No idle one and no waiting room: refused.
            #expect(pool.lease("b", idleHere: false, idleElsewhere: false) == .reject(.pendingRequests))
        }

        @Test func aCancelledWaiterLeavesTheQueue() {
            var pool = Self.pool(connections: 1, pending: 2)
            _ = pool.lease("a", idleHere: false, idleElsewhere: false)
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .wait(id: 0))
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .wait(id: 1))
            let first = pool.cancel(id: 0), again = pool.cancel(id: 0)
            #expect(first)
            #expect(!again)
            #expect(pool.released("a") == .handOver(id: 1))
        }

        @Test func limitsDivideAmongLoopsRoundingUp() {
            let pool = Self.pool(connections: 1024, pending: 3, loopCount: 2)
            #expect(pool.connectionLimit == 512)
            #expect(pool.pendingLimit == 2)
            var zero = Self.pool(connections: 0, pending: 0, loopCount: 4)
            #expect(zero.connectionLimit == 1, "at least one connection per loop")
            _ = zero.lease("a", idleHere: false, idleElsewhere: false)
            #expect(zero.lease("a", idleHere: false, idleElsewhere: false) == .reject(.pendingRequests))
        }

        /// Found by fuzzing (fuzz/corpus/apply-yaml): `maxConnections: 9223372036854775807`
        /// is accepted, and rounding its per-loop share up trapped on overflow.
        @Test func aLimitNearIntMaxDividesWithoutOverflow() {
            let pool = Self.pool(connections: Int.max, pending: Int.max, loopCount: 3)
            #expect(pool.connectionLimit == Int.max / 3 + 1)
            #expect(pool.pendingLimit == Int.max / 3 + 1)
        }

        @Test func newThresholdsKeepWhatIsOpen() {
            var pool = Self.pool(connections: 3, pending: 1)
            for _ in 0..<3 { _ = pool.lease("a", idleHere: false, idleElsewhere: false) }
            pool.setThresholds(
                CircuitBreakerThresholds(maxConnections: 1, maxPendingRequests: 1, maxRequests: 1, maxRetries: 0))
            #expect(pool.open == 3)
            #expect(pool.lease("a", idleHere: false, idleElsewhere: false) == .wait(id: 0))
            #expect(pool.closed() == .connect(id: 0, endpoint: "a"))
            #expect(pool.closed() == .none)
            #expect(pool.closed() == .none)
            #expect(pool.open == 1)
        }
    }
}
