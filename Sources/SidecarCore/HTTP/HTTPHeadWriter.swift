import NIOCore

/// Serialises a parsed head for the next hop: the start line and every kept header line are
/// copied from the original bytes (no `String` per header), dropped fields are skipped, and
/// added lines are appended as bytes before the final CRLF.
///
/// Build one per listener (its removal list is configuration) and call `write` per message.
/// Adding a line *sets* it: any received field of the same name is dropped first, so a caller
/// cannot smuggle in its own `x-mesh-caller`. Names compare as app frameworks read them (case
/// folded, `_` as `-`), so `x_mesh_caller` is the same field as `X-Mesh-Caller`. Content-Length, Transfer-Encoding and Trailer
/// are always kept, because the body is relayed with its original framing. The writer does
/// not decide connection reuse: to ask the next hop to close, add `connection: close`.
/// If the result would equal the input, the caller may forward `head.headers.bytes` instead.
public struct HTTPHeadWriter: Sendable {
    /// Header names dropped from every head (ASCII case-insensitive, `_` equal to `-`).
    public var removedNames: [String]
    /// Drop hop-by-hop fields: Connection, Keep-Alive, Proxy-Connection, TE, Upgrade,
    /// Proxy-Authorization, Proxy-Authenticate and every name listed in Connection.
    public var stripHopByHop: Bool
    /// When a head asks for an upgrade (`framing.upgrade`), keep its `Upgrade` field and write
    /// `connection: upgrade`, so that a relayed WebSocket handshake survives.
    public var relayUpgrade: Bool

    public init(removing removedNames: [String] = [], stripHopByHop: Bool = true, relayUpgrade: Bool = false) {
        self.removedNames = removedNames
        self.stripHopByHop = stripHopByHop
        self.relayUpgrade = relayUpgrade
    }

    /// Writes `head`, modified, to `buffer`.
    public func write(_ head: HTTPRawRequestHead, adding extra: [HTTPHeaderLine] = [], into buffer: inout ByteBuffer) {
        write(head.headers, upgrade: head.framing.upgrade, adding: extra, into: &buffer)
    }

    /// Writes the request with a new request-target (a proxy turning absolute-form
    /// `http://payments/pay` into origin-form `/pay`); the rest as `write(_:adding:into:)`.
    /// `target` must already be a valid request-target (no spaces or controls).
    public func write(
        _ head: HTTPRawRequestHead, target: String, adding extra: [HTTPHeaderLine] = [], into buffer: inout ByteBuffer
    ) {
        buffer.writeString(head.methodName)
        buffer.writeStaticString(" ")
        buffer.writeString(target)
        buffer.writeStaticString(head.version == .http1_0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n")
        write(head.headers, upgrade: head.framing.upgrade, adding: extra, skippingStartLine: true, into: &buffer)
    }

    /// Writes `head`, modified, to `buffer`.
    public func write(_ head: HTTPRawResponseHead, adding extra: [HTTPHeaderLine] = [], into buffer: inout ByteBuffer) {
        write(head.headers, upgrade: head.framing.upgrade, adding: extra, into: &buffer)
    }

    private func write(
        _ headers: HTTPRawHeaders, upgrade: Bool, adding extra: [HTTPHeaderLine], skippingStartLine: Bool = false,
        into buffer: inout ByteBuffer
    ) {
        let keepUpgrade = relayUpgrade && upgrade && stripHopByHop
        var extraLength = 2
        for line in extra { extraLength += line.wireLength }
        if keepUpgrade { extraLength += 21 }
        buffer.reserveCapacity(minimumWritableBytes: headers.bytes.readableBytes + extraLength)

        headers.bytes.withUnsafeReadableBytes { raw in
            let headerEnd = raw.count - 2  // before the final empty line's CRLF
            var runStart = 0  // start line onwards: copied in runs of kept lines
            if skippingStartLine {
                var index = 0
                while index + 1 < raw.count, !(raw[index] == 13 && raw[index + 1] == 10) { index += 1 }
                runStart = min(index + 2, headerEnd)
            }
            for field in headers.fields where !keeps(field, raw, keepUpgrade: keepUpgrade, extra: extra) {
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[runStart..<Int(field.lineStart)]))
                runStart = Int(field.lineEnd)
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[runStart..<headerEnd]))
        }
        // The added lines and the final CRLF in one write (capacity is reserved above).
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: extraLength) { raw in
            let out = raw.bindMemory(to: UInt8.self)
            var at = 0
            if keepUpgrade { out.copyUTF8(of: "connection: upgrade\r\n", at: &at) }
            for line in extra {
                out.copyUTF8(of: line.name, at: &at)
                out[at] = UInt8(ascii: ":")
                out[at + 1] = UInt8(ascii: " ")
                at += 2
                out.copyUTF8(of: line.value, at: &at)
                out[at] = 13
                out[at + 1] = 10
                at += 2
            }
            out[at] = 13
            out[at + 1] = 10
            return at + 2
        }
    }

    private func keeps(
        _ field: HTTPHeaderField,
        _ raw: UnsafeRawBufferPointer,
        keepUpgrade: Bool,
        extra: [HTTPHeaderLine]
    ) -> Bool {
        if field.known == .contentLength || field.known == .transferEncoding {
            return true  // the body is relayed with this framing; never re-frame it by accident
        }
        if stripHopByHop && field.isHopByHop && !(keepUpgrade && field.known == .upgrade) {
            return false
        }
        if removedNames.isEmpty && extra.isEmpty { return true }
        let name = UnsafeRawBufferPointer(rebasing: raw[field.nameRange])
        for removed in removedNames where HTTPGrammar.equalsAsFieldName(name, removed) {
            return false
        }
        for line in extra where HTTPGrammar.equalsAsFieldName(name, line.name) {
            return false
        }
        return true
    }
}

extension UnsafeMutableBufferPointer<UInt8> {
    /// Copies `text`'s UTF-8 to `offset` and moves `offset` past it; the caller reserved the room.
    func copyUTF8(of text: String, at offset: inout Int) {
        let copied: Int? = text.utf8.withContiguousStorageIfAvailable { bytes in
            _ = UnsafeMutableBufferPointer(rebasing: self[offset..<offset + bytes.count]).update(fromContentsOf: bytes)
            return bytes.count
        }
        if let copied {
            offset += copied
        } else {
            for byte in text.utf8 {
                self[offset] = byte
                offset += 1
            }
        }
    }
}
