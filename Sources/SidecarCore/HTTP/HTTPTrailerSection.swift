import NIOCore

/// Filters the trailer section that ends a chunked body (RFC 9112 §7.1.2) as it is relayed:
/// fields the mesh sets itself (`x-mesh-caller`, `x-mesh-user`) are removed from trailers as
/// they are from the head, so an app that merges trailers into headers never sees a forged one.
///
/// The section was validated by `HTTPChunkedStateMachine` (`name ":" value CRLF` lines, then
/// CRLF) and held whole by `HTTPBodyFramer(holdsTrailers:)`, so it is the last bytes of one
/// body slice. Most requests have no trailer fields and cost one comparison.
enum HTTPTrailerSection {
    /// `body` with the fields named like one of `names` (as `HTTPGrammar.equalsAsFieldName`)
    /// dropped from its last `sectionBytes` bytes; `body` itself when none is there.
    static func removing(
        _ names: [String], from body: ByteBuffer, sectionBytes: Int, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        guard sectionBytes > 2, sectionBytes <= body.readableBytes, !names.isEmpty else { return body }
        let sectionStart = body.readableBytes - sectionBytes
        var kept: [Range<Int>] = []  // line ranges (CRLF included) relative to the readable bytes
        var dropped = false
        body.withUnsafeReadableBytes { raw in
            var lineStart = sectionStart
            while lineStart < raw.count - 2 {
                var lf = lineStart
                while lf < raw.count, raw[lf] != HTTPGrammar.lf { lf += 1 }
                guard lf < raw.count else { break }
                var colon = lineStart
                while colon < lf, raw[colon] != HTTPGrammar.colon { colon += 1 }
                let name = UnsafeRawBufferPointer(rebasing: raw[lineStart..<colon])
                if names.contains(where: { HTTPGrammar.equalsAsFieldName(name, $0) }) {
                    dropped = true
                } else {
                    kept.append(lineStart..<(lf + 1))
                }
                lineStart = lf + 1
            }
        }
        guard dropped else { return body }
        var out = allocator.buffer(capacity: body.readableBytes)
        var prefix = body.getSlice(at: body.readerIndex, length: sectionStart)!
        out.writeBuffer(&prefix)
        for line in kept {
            var bytes = body.getSlice(at: body.readerIndex + line.lowerBound, length: line.count)!
            out.writeBuffer(&bytes)
        }
        out.writeStaticString("\r\n")
        return out
    }
}
