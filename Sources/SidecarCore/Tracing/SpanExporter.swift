#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// One event loop's OTLP span export: each finished, sampled exchange appends a small
/// `SpanRecord` (no JSON, no I/O on the request path); `SpanBatchStateMachine` decides when a
/// batch leaves, and this carries it out: the flush timer, the JSON, the POST through
/// `OTLPHTTPClient` on this same loop, the counters. Confined to its loop.
///
/// Not swift-otel: its OTLP/HTTP exporter alone (trait `OTLPHTTP`) brings async-http-client,
/// swift-nio-ssl (BoringSSL beside our OpenSSL), swift-nio-http2, swift-protobuf and more,
/// 2 min 42 s of clean debug build on 2 cores, and records spans through tasks and locks;
/// a span here is a struct appended on the request's own loop.
final class SpanExporter {
    private let eventLoop: EventLoop
    private let export: SpanExport
    private var state: SpanBatchStateMachine
    /// The export in flight, for shutdown to wait on.
    private var inFlight: EventLoopFuture<Void>?

    init(eventLoop: EventLoop, export: SpanExport) {
        self.eventLoop = eventLoop
        self.export = export
        self.state = SpanBatchStateMachine(capacity: export.capacity, batchSize: export.batchSize)
    }

    /// Spans waiting for a batch (tests).
    var pendingCount: Int { state.pending.count }

    /// Records the finished exchange as a server (inbound) or client (outbound) span when its
    /// trace is sampled. `now` is the loop's clock; the span's times are wall time.
    func record(_ exchange: ProxyExchange, status: Int, kind: SpanRecord.Kind, now: NIODeadline) {
        guard let trace = exchange.trace, export.sampler.samples(trace) else { return }
        var timespec = timespec()
        clock_gettime(CLOCK_REALTIME, &timespec)
        let end = UInt64(timespec.tv_sec) &* 1_000_000_000 &+ UInt64(timespec.tv_nsec)
        let elapsed = now.uptimeNanoseconds &- exchange.start.uptimeNanoseconds
        let span = SpanRecord(
            traceID: trace.traceID, spanID: trace.spanID, parentSpanID: trace.parentSpanID, kind: kind,
            startUnixNanos: end &- min(elapsed, end), endUnixNanos: end, method: exchange.methodName, peer: exchange.peer,
            status: status, meshError: exchange.errorCause?.rawValue)
        carryOut(state.append(span))
    }

    /// Sends whatever waits (shutdown), and completes once the exports in flight have ended.
    func flush() -> EventLoopFuture<Void> {
        carryOut(state.flushNow())
        return inFlight ?? eventLoop.makeSucceededVoidFuture()
    }

    private func carryOut(_ action: SpanBatchStateMachine.Action) {
        switch action {
        case .none:
            return
        case .drop:
            export.droppedFull.increment()
        case .scheduleFlush:
            eventLoop.assumeIsolated().scheduleTask(in: export.flushInterval) { [weak self] in
                guard let self else { return }
                self.carryOut(self.state.timerFired())
            }
        case .export(let batch):
            send(batch)
        }
    }

    private func send(_ batch: [SpanRecord]) {
        let body = OTLPTraceEncoding.request(service: export.service, spans: batch)
        let count = UInt64(batch.count)
        let export = self.export
        let done = OTLPHTTPClient.post(
            body, to: export.endpoint, path: export.path, timeout: export.exportTimeout, on: eventLoop
        ).assumeIsolated().map { status in
            // OTLP/HTTP: 2xx is accepted (a partial success still says 200); anything else
            // loses the batch.
            if (200..<300).contains(status) {
                export.exported.add(count)
            } else {
                export.droppedFailed.add(count)
            }
        }.recover { _ in
            export.droppedFailed.add(count)
        }.nonisolated()
        inFlight = done
        done.assumeIsolated().whenComplete { [weak self] _ in
            guard let self else { return }
            self.inFlight = nil
            self.carryOut(self.state.exportFinished())
        }
    }
}
