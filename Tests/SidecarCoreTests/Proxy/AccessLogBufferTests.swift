#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// Access log lines leave in batches: on size, on the batch's timer, on flush; never a write
/// per line, never a line split across writes.
@Suite struct AccessLogBufferTests {
    /// A pipe whose read end is non-blocking: `drain` returns what was written so far.
    final class Pipe {
        let read: CInt, write: CInt
        init() throws {
            var fds: [CInt] = [0, 0]
            guard pipe(&fds) == 0 else { throw IOError(errnoCode: errno, reason: "pipe") }
            (read, write) = (fds[0], fds[1])
            _ = fcntl(read, F_SETFL, fcntl(read, F_GETFL) | O_NONBLOCK)
        }
        func drain() -> String {
            var out: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { Glibc.read(read, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                out += chunk[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }
        deinit { close(read); close(write) }
    }

    @Test func linesWaitForTheBatchTimerThenLeaveTogether() throws {
        let loop = EmbeddedEventLoop()
        let pipe = try Pipe()
        let buffer = AccessLogBuffer(eventLoop: loop, fileDescriptor: pipe.write, flushBytes: 4096, flushInterval: .milliseconds(100))
        buffer.append("{\"a\":1}\n")
        buffer.append("{\"a\":2}\n")
        #expect(pipe.drain().isEmpty, "no write per line")
        loop.advanceTime(by: .milliseconds(99))
        #expect(pipe.drain().isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(pipe.drain() == "{\"a\":1}\n{\"a\":2}\n")
        buffer.append("{\"a\":3}\n")
        loop.advanceTime(by: .milliseconds(100))
        #expect(pipe.drain() == "{\"a\":3}\n", "a new batch gets its own timer")
    }

    @Test func aFullBatchIsWrittenAtOnceAndFlushEmptiesTheRest() throws {
        let loop = EmbeddedEventLoop()
        let pipe = try Pipe()
        let buffer = AccessLogBuffer(eventLoop: loop, fileDescriptor: pipe.write, flushBytes: 64, flushInterval: .seconds(10))
        let line = String(repeating: "x", count: 39) + "\n"
        buffer.append(line)
        #expect(pipe.drain().isEmpty)
        buffer.append(line)
        #expect(pipe.drain() == line + line, "80 bytes passed the 64-byte batch: written whole")
        buffer.append(line)
        #expect(buffer.pendingBytes == 40)
        buffer.flush()  // what drain and shutdown do
        #expect(pipe.drain() == line)
        #expect(buffer.pendingBytes == 0)
    }
}
