// libFuzzer harness for the HTTP/1.1 framing layer (Sources/SidecarCore/HTTP).
// Build and run: see fuzz/README.md. Compiled together with the HTTP sources, so no
// `import SidecarCore`; NIOCore comes from the SwiftPM debug build.
import NIOCore

/// Frames `input` cut into reads of `readSize` bytes; returns a summary of every message, or the error.
func frame(_ input: [UInt8], readSize: Int, response: Bool) -> Result<[String], HTTPParserError> {
    var parser = HTTPHeadParser(limits: .init(maxHeadSize: 4096, maxHeaderCount: 32))
    var buffer = ByteBuffer()
    var framer: HTTPBodyFramer?
    var summary: [String] = []
    var offset = 0
    do throws(HTTPParserError) {
        while offset < input.count {
            let end = min(offset + readSize, input.count)
            buffer.writeBytes(input[offset..<end])
            offset = end
            pump: while true {
                if framer == nil {
                    if response {
                        guard let head = try parser.parseResponse(&buffer, requestMethod: .GET) else { break pump }
                        summary.append("\(head.status) \(head.headers.decoded) \(head.framing)")
                        checkRewrite(head.headers.bytes, response: true, framing: head.framing)
                        framer = HTTPBodyFramer(framing: head.framing.body)
                    } else {
                        guard let head = try parser.parseRequest(&buffer) else { break pump }
                        summary.append("\(head.methodName) \(head.target) \(head.headers.decoded) \(head.framing)")
                        checkRewrite(head.headers.bytes, response: false, framing: head.framing)
                        framer = HTTPBodyFramer(framing: head.framing.body)
                    }
                }
                let (body, done) = try framer!.readBody(from: &buffer)
                summary.append("body \(body?.readableBytes ?? 0)")
                guard done else { break pump }
                summary.append("end")
                framer = nil
                if buffer.readableBytes == 0 { break pump }
            }
            buffer.discardReadBytes()
        }
        return .success(summary)
    } catch {
        return .failure(error)
    }
}

/// A head we accepted, rewritten with an injected header, must parse again to the same framing.
func checkRewrite(_ bytes: ByteBuffer, response: Bool, framing: HTTPFraming) {
    var input = bytes
    var parser = HTTPHeadParser(limits: .init(maxHeadSize: 8192, maxHeaderCount: 64))
    var out = ByteBuffer()
    let extra = [try! HTTPHeaderLine(name: "x-request-id", value: "fuzz")]
    if response {
        let head = try! parser.parseResponse(&input, requestMethod: .GET)!
        HTTPHeadWriter().write(head, adding: extra, into: &out)
        let again = try! parser.parseResponse(&out, requestMethod: .GET)!
        precondition(again.framing.body == framing.body, "rewrite changed response framing")
    } else {
        let head = try! parser.parseRequest(&input)!
        HTTPHeadWriter().write(head, adding: extra, into: &out)
        let again = try! parser.parseRequest(&out)!
        precondition(again.framing.body == framing.body, "rewrite changed request framing")
        precondition(again.headers.firstValue(named: "x-request-id") == "fuzz")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 1 else { return 0 }
    let control = data[0]
    let input = Array(UnsafeBufferPointer(start: data + 1, count: count - 1))
    let response = control & 0x80 != 0
    let readSize = Int(control & 0x7F) + 1
    // Framing must not depend on how the bytes were cut into reads.
    let whole = frame(input, readSize: input.count, response: response)
    let split = frame(input, readSize: readSize, response: response)
    switch (whole, split) {
    case (.success(let a), .success(let b)):
        // Body byte counts per read differ; heads, framings and message ends must not.
        precondition(a.filter { !$0.hasPrefix("body") } == b.filter { !$0.hasPrefix("body") }, "split changed framing")
    case (.failure, .failure):
        break
    default:
        preconditionFailure("split changed accept/reject: \(whole) vs \(split)")
    }
    return 0
}
