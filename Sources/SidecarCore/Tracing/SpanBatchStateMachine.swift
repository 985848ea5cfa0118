/// What one event loop's span exporter does next: spans are appended on the request path and
/// sent in batches of at most `batchSize`, one export in flight at a time, a batch leaving
/// when it is full or `flushInterval` after its first span (one timer per batch, never one
/// per request). At most `capacity` spans wait; past that a new span is dropped (counted), so
/// a collector that is down or slow costs bounded memory and never blocks a request. A batch
/// whose export fails is dropped too (counted), not retried: spans are best effort.
///
/// Pure: the exporter carries out the actions (timer, HTTP POST, counters).
struct SpanBatchStateMachine {
    enum Action: Equatable {
        case none
        /// Arm the one flush timer.
        case scheduleFlush
        /// POST these spans now.
        case export([SpanRecord])
        /// The span did not fit: count it as dropped.
        case drop
    }

    let capacity: Int
    let batchSize: Int
    private(set) var pending: [SpanRecord] = []
    private(set) var exporting = false
    private(set) var flushScheduled = false

    init(capacity: Int = 2048, batchSize: Int = 512) {
        precondition(capacity >= batchSize && batchSize > 0)
        self.capacity = capacity
        self.batchSize = batchSize
    }

    mutating func append(_ span: SpanRecord) -> Action {
        guard pending.count < capacity else { return .drop }
        if pending.isEmpty { pending.reserveCapacity(batchSize) }
        pending.append(span)
        if !exporting, pending.count >= batchSize { return takeBatch() }
        if !flushScheduled, !exporting {
            flushScheduled = true
            return .scheduleFlush
        }
        return .none
    }

    /// The flush timer fired.
    mutating func timerFired() -> Action {
        flushScheduled = false
        guard !exporting, !pending.isEmpty else { return .none }
        return takeBatch()
    }

    /// The export in flight ended (delivered or not): the next batch, a timer for what is
    /// left, or nothing.
    mutating func exportFinished() -> Action {
        exporting = false
        if pending.count >= batchSize { return takeBatch() }
        if !pending.isEmpty, !flushScheduled {
            flushScheduled = true
            return .scheduleFlush
        }
        return .none
    }

    /// Shutdown: whatever waits, now (nil while an export is in flight or nothing waits).
    mutating func flushNow() -> Action {
        guard !exporting, !pending.isEmpty else { return .none }
        return takeBatch()
    }

    private mutating func takeBatch() -> Action {
        let count = min(batchSize, pending.count)
        let batch = Array(pending.prefix(count))
        pending.removeFirst(count)
        exporting = true
        return .export(batch)
    }
}
