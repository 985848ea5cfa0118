#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// One event loop's access log lines on their way to stdout: appended on the request path,
/// written in batches, so a busy sidecar makes one `write(2)` per batch instead of one per
/// request. A batch is written when it reaches `flushBytes`, else `flushInterval` after its
/// first line (one timer per batch, never one per request), and on `flush()` (drain and
/// shutdown: nothing is lost on SIGTERM). Each write holds whole lines, so the lines of
/// different loops never interleave. Confined to its loop.
final class AccessLogBuffer {
    private let eventLoop: EventLoop
    private let fileDescriptor: CInt
    /// Written at its end without zeroing (`writeWithUnsafeMutableBytes`), cleared after each write.
    private var pending: ByteBuffer
    private var flushScheduled = false
    let flushBytes: Int
    let flushInterval: TimeAmount

    init(
        eventLoop: EventLoop, fileDescriptor: CInt = 1, flushBytes: Int = 64 * 1024,
        flushInterval: TimeAmount = .milliseconds(100)
    ) {
        self.eventLoop = eventLoop
        self.fileDescriptor = fileDescriptor
        self.flushBytes = flushBytes
        self.flushInterval = flushInterval
        pending = ByteBufferAllocator().buffer(capacity: flushBytes + 4096)
    }

    /// Bytes waiting for the next write.
    var pendingBytes: Int { pending.readableBytes }

    func append(_ line: String) {
        pending.writeString(line)
        lineAppended()
    }

    /// Appends one line that `write` puts straight into the pending bytes (newline included),
    /// at most `bound` bytes.
    func appendLine(bound: Int, _ write: (inout JSONByteWriter) -> Void) {
        pending.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { raw in
            var writer = JSONByteWriter(raw.bindMemory(to: UInt8.self).baseAddress!, at: 0, limit: bound)
            write(&writer)
            return writer.offset
        }
        lineAppended()
    }

    private func lineAppended() {
        if pending.readableBytes >= flushBytes {
            flush()
        } else if !flushScheduled {
            flushScheduled = true
            eventLoop.assumeIsolated().scheduleTask(in: flushInterval) { [self] in
                self.flushScheduled = false
                self.flush()
            }
        }
    }

    /// Writes every pending line now.
    func flush() {
        guard pending.readableBytes > 0 else { return }
        pending.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0, errno == EINTR { continue }
                if written <= 0 { break }  // stdout gone: the lines have nowhere to go
                offset += written
            }
        }
        pending.clear()
    }
}
