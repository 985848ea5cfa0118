import Testing

@testable import SidecarCore

/// Span batching: one timer per batch, a full batch leaves at once, one export in flight,
/// bounded waiting spans (the rest dropped), and what follows an export.
@Suite struct SpanBatchStateMachineTests {
    func span(_ index: Int) -> SpanRecord {
        SpanRecord(
            traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: String(repeating: "0", count: 12) + "\(1000 + index)",
            parentSpanID: nil, kind: .client, startUnixNanos: 1, endUnixNanos: 2, method: "GET", peer: "payments",
            status: 200, meshError: nil)
    }

    @Test func theFirstSpanArmsOneTimerAndTheTimerSendsTheBatch() {
        var machine = SpanBatchStateMachine(capacity: 8, batchSize: 4)
        #expect(machine.append(span(0)) == .scheduleFlush)
        #expect(machine.append(span(1)) == .none, "one timer per batch, not per span")
        #expect(machine.timerFired() == .export([span(0), span(1)]))
        #expect(machine.pending.isEmpty && machine.exporting)
        #expect(machine.exportFinished() == .none)
        #expect(machine.timerFired() == .none, "a timer with nothing waiting does nothing")
    }

    @Test func aFullBatchLeavesAtOnceAndOneExportIsInFlight() {
        var machine = SpanBatchStateMachine(capacity: 8, batchSize: 2)
        #expect(machine.append(span(0)) == .scheduleFlush)
        #expect(machine.append(span(1)) == .export([span(0), span(1)]))
        // While it is in flight, spans wait (no timer: the export's end decides).
        #expect(machine.append(span(2)) == .none)
        #expect(machine.append(span(3)) == .none)
        #expect(machine.append(span(4)) == .none)
        #expect(machine.timerFired() == .none, "the first batch's timer fires during the export")
        #expect(machine.exportFinished() == .export([span(2), span(3)]), "a full batch waits: it goes next")
        #expect(machine.exportFinished() == .scheduleFlush, "a partial batch waits for its timer")
        #expect(machine.timerFired() == .export([span(4)]))
    }

    @Test func pastCapacitySpansAreDropped() {
        var machine = SpanBatchStateMachine(capacity: 3, batchSize: 2)
        _ = machine.append(span(0))
        _ = machine.append(span(1))  // exporting
        #expect(machine.append(span(2)) == .none)
        #expect(machine.append(span(3)) == .none)
        #expect(machine.append(span(4)) == .none)
        #expect(machine.append(span(5)) == .drop, "3 wait: the collector is behind")
        #expect(machine.pending.count == 3)
    }

    @Test func shutdownSendsWhatWaitsUnlessAnExportIsInFlight() {
        var machine = SpanBatchStateMachine(capacity: 8, batchSize: 4)
        #expect(machine.flushNow() == .none)
        _ = machine.append(span(0))
        #expect(machine.flushNow() == .export([span(0)]))
        _ = machine.append(span(1))
        #expect(machine.flushNow() == .none, "in flight: its end sends the rest")
    }
}
