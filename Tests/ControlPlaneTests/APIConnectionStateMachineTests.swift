@testable import ControlPlane
import Testing

/// The API connection's decisions without I/O: nothing of a body is kept before the head is
/// admitted, bodies are bounded in size, budget and time, refusals drain then close.
@Suite struct APIConnectionStateMachineTests {
    private func machine(maxBodySize: Int = 100) -> APIConnectionStateMachine {
        APIConnectionStateMachine(limits: .init(maxBodySize: maxBodySize, maxDrainBytes: 300))
    }

    @Test func theHeadIsAdmittedBeforeAnyBodyIsRead() {
        var machine = machine()
        #expect(machine.head(declaredLength: 10) == .admit)
        #expect(machine.holdsReads)
        // What came with the head's read is kept (reserved) while the router decides.
        #expect(machine.body(count: 4, reserved: true) == .keepBody)
        #expect(machine.admitted(true) == .readBody)
        #expect(!machine.holdsReads)
        #expect(machine.body(count: 6, reserved: true) == .keepBody)
        #expect(machine.end() == .dispatch)
        #expect(machine.responseSent(keepAlive: true) == .none)
        #expect(machine.state == .idle)
        // The next request on the same connection.
        #expect(machine.head(declaredLength: nil) == .admit)
        #expect(machine.end() == .none)
        #expect(machine.admitted(true) == .dispatch, "a whole request waits for its admission")
        #expect(machine.responseSent(keepAlive: false) == .close)
    }

    @Test func aRefusedHeadIsAnsweredAndItsBodyDrainedNotKept() {
        var machine = machine()
        _ = machine.head(declaredLength: 100 << 20)
        #expect(machine.admitted(false) == .refuse(.notAdmitted, drain: true), "401 before the size is even looked at")
        #expect(!machine.holdsReads)
        #expect(machine.body(count: 200, reserved: false) == .dropBody)
        #expect(machine.body(count: 200, reserved: false) == .close, "drained at most maxDrainBytes")
        #expect(machine.state == .closed)
    }

    @Test func aRefusedWholeRequestClosesOnceAnswered() {
        var machine = machine()
        _ = machine.head(declaredLength: nil)
        _ = machine.end()
        #expect(machine.admitted(false) == .refuse(.notAdmitted, drain: false))
        #expect(machine.responseSent(keepAlive: true) == .close)
    }

    @Test func bodiesOverTheLimitAre413() {
        var declared = machine()
        _ = declared.head(declaredLength: 101)
        #expect(declared.admitted(true) == .refuse(.tooLarge, drain: true))
        #expect(declared.end() == .close)

        var chunked = machine()
        _ = chunked.head(declaredLength: nil)
        _ = chunked.admitted(true)
        #expect(chunked.body(count: 60, reserved: true) == .keepBody)
        #expect(chunked.body(count: 60, reserved: true) == .refuse(.tooLarge, drain: true))
    }

    @Test func anExhaustedBudgetIs503() {
        var machine = machine()
        _ = machine.head(declaredLength: 50)
        _ = machine.admitted(true)
        #expect(machine.body(count: 10, reserved: false) == .refuse(.busy, drain: true))
        #expect(machine.drainDeadlinePassed() == .close)
    }

    @Test func aSlowBodyIs408ButASlowRouterIsNot() {
        var slow = machine()
        _ = slow.head(declaredLength: 50)
        _ = slow.admitted(true)
        _ = slow.body(count: 10, reserved: true)
        #expect(slow.bodyDeadlinePassed() == .refuse(.tooSlow, drain: true))
        #expect(slow.admitted(true) == .none)

        var stuckBeforeAdmission = machine()
        _ = stuckBeforeAdmission.head(declaredLength: 50)
        #expect(stuckBeforeAdmission.bodyDeadlinePassed() == .refuse(.tooSlow, drain: true))
        #expect(stuckBeforeAdmission.admitted(true) == .none, "a late admission changes nothing")

        var whole = machine()
        _ = whole.head(declaredLength: 0)
        _ = whole.end()
        #expect(whole.bodyDeadlinePassed() == .none)
        #expect(whole.admitted(true) == .dispatch)
        #expect(whole.bodyDeadlinePassed() == .none)
    }
}
