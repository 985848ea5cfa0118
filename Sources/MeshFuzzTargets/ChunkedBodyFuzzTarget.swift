import NIOCore
import SidecarCore

/// The chunked body framer (`HTTPBodyFramer` over `HTTPChunkedStateMachine`), trailers included.
///
/// Input: byte 0 sets the read size (1…128), byte 1 picks small or default limits on chunk
/// extensions and the trailer section (so their edges are reachable), the rest is the bytes
/// after a `transfer-encoding: chunked` head.
///
/// Properties: one read and reads of that size agree on accept/reject, on how many bytes are
/// the body and on where the message ends; and both agree with `ChunkedReference`, a line-based
/// decoder written from RFC 9112 §7.1 and the framer's documented limits.
enum ChunkedBodyFuzzTarget {
    static let extensionLimits = [0, 1, 7, 4096]
    static let trailerLimits = [0, 2, 5, 40, 16 * 1024]

    static func run(_ data: [UInt8]) {
        guard data.count >= 2 else { return }
        let readSize = Int(data[0] & 0x7F) + 1
        let limits = HTTPBodyFramer.Limits(
            maxChunkExtensionLength: extensionLimits[Int(data[1] & 0x03)],
            maxTrailerSize: trailerLimits[Int(data[1] >> 2) % trailerLimits.count])
        let input = Array(data.dropFirst(2))

        let whole = frame(input, readSize: max(1, input.count), limits: limits)
        let split = frame(input, readSize: readSize, limits: limits)
        fuzzCheck(whole == split, "split reads of \(readSize) changed the framing: \(whole) vs \(split)")

        let reference = ChunkedReference(
            maxExtensionLength: limits.maxChunkExtensionLength, maxTrailerSize: limits.maxTrailerSize
        ).decode(input)
        switch (whole, reference) {
        case (.failed, .invalid):
            break
        case (.framed(let bodyBytes, let complete), .complete(let end)):
            fuzzCheck(complete && bodyBytes == end, "framer \(whole), reference ends at \(end)")
        case (.framed(let bodyBytes, let complete), .incomplete):
            fuzzCheck(!complete && bodyBytes == input.count, "framer \(whole), reference wants more")
        default:
            fuzzCheck(false, "framer \(whole), reference \(reference)")
        }
    }

    enum Outcome: Equatable, CustomStringConvertible {
        /// The body's byte count (the input up to the end of the message, or all of it).
        case framed(bodyBytes: Int, complete: Bool)
        case failed(HTTPParserError)

        var description: String {
            switch self {
            case .framed(let n, let complete): complete ? "complete after \(n)" : "open after \(n)"
            case .failed(let error): "failed: \(error)"
            }
        }
    }

    /// Offers `input` in reads of `readSize`, as a proxy does, until the message ends.
    static func frame(_ input: [UInt8], readSize: Int, limits: HTTPBodyFramer.Limits) -> Outcome {
        var framer = HTTPBodyFramer(framing: .chunked, limits: limits)
        var total = 0
        var offset = 0
        var buffer = ByteBuffer()
        while offset < input.count {
            let end = min(offset + readSize, input.count)
            buffer.writeBytes(input[offset..<end])
            offset = end
            do {
                let (body, complete) = try framer.readBody(from: &buffer)
                total += body?.readableBytes ?? 0
                if complete {
                    fuzzCheck(total + buffer.readableBytes + (input.count - offset) == input.count, "bytes lost or doubled")
                    return .framed(bodyBytes: total, complete: true)
                }
                fuzzCheck(buffer.readableBytes == 0, "an open body left \(buffer.readableBytes) bytes unread")
            } catch {
                return .failed(error)
            }
        }
        return .framed(bodyBytes: total, complete: false)
    }
}
