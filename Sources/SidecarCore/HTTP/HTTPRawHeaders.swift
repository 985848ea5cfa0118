import NIOCore

/// The header fields of one parsed head, kept as offsets into the head's original bytes.
///
/// Nothing is decoded into `String` unless asked (`name(at:)`, `value(at:)`, `firstValue(named:)`);
/// comparisons by name are case-insensitive and allocation-free. `bytes` is a slice of the
/// connection's receive buffer holding exactly the head (start line through the final CRLF).
public struct HTTPRawHeaders: Sendable {
    /// The whole head, start line included, exactly as received.
    public let bytes: ByteBuffer
    /// The header lines in arrival order.
    public let fields: [HTTPHeaderField]

    init(bytes: ByteBuffer, fields: [HTTPHeaderField]) {
        self.bytes = bytes
        self.fields = fields
    }

    public var count: Int { fields.count }

    /// The name of field `index` as received (original case).
    public func name(at index: Int) -> String {
        string(fields[index].nameRange)
    }

    /// The value of field `index`, without surrounding whitespace.
    public func value(at index: Int) -> String {
        string(fields[index].valueRange)
    }

    /// Calls `body` with the value bytes of field `index` (no `String` made).
    func withValueBytes<Result>(at index: Int, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        let range = fields[index].valueRange
        return bytes.withUnsafeReadableBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// The name bytes of field `index`, as a view sharing the head's storage.
    public func nameBytes(at index: Int) -> ByteBufferView {
        view(fields[index].nameRange)
    }

    /// The value bytes of field `index`, as a view sharing the head's storage.
    public func valueBytes(at index: Int) -> ByteBufferView {
        view(fields[index].valueRange)
    }

    /// Whether field `index` is named `name` (ASCII case-insensitive, no allocation).
    public func nameEquals(at index: Int, _ name: String) -> Bool {
        let range = fields[index].nameRange
        return bytes.withUnsafeReadableBytes { raw in
            HTTPGrammar.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: raw[range]), name)
        }
    }

    /// Whether field `index` has value `value` (ASCII case-insensitive, no allocation).
    public func valueEquals(at index: Int, _ value: String) -> Bool {
        let range = fields[index].valueRange
        return bytes.withUnsafeReadableBytes { raw in
            HTTPGrammar.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: raw[range]), value)
        }
    }

    /// The index of the first field named `name`, if any.
    public func firstIndex(named name: String) -> Int? {
        // One pass over the head's bytes; names of another length are skipped unread (several
        // lookups per request, over heads that carry the mesh's own fields).
        let length = UInt32(truncatingIfNeeded: name.utf8.count)
        return bytes.withUnsafeReadableBytes { raw in
            for index in fields.indices where fields[index].nameLength == length {
                if HTTPGrammar.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: raw[fields[index].nameRange]), name) {
                    return index
                }
            }
            return nil
        }
    }

    /// Whether any field is named `name`.
    public func contains(_ name: String) -> Bool {
        firstIndex(named: name) != nil
    }

    /// The value of the first field named `name`, decoded (allocates one String).
    public func firstValue(named name: String) -> String? {
        firstIndex(named: name).map { value(at: $0) }
    }

    /// All values of fields named `name`, in order.
    public func values(named name: String) -> [String] {
        fields.indices.filter { nameEquals(at: $0, name) }.map { value(at: $0) }
    }

    /// The first field of a kind the framing layer knows, without any byte compare.
    public func firstIndex(of known: HTTPKnownHeader) -> Int? {
        fields.firstIndex { $0.known == known }
    }

    /// The value of the first field of a known name, decoded.
    public func firstValue(of known: HTTPKnownHeader) -> String? {
        firstIndex(of: known).map { value(at: $0) }
    }

    /// Every `(name, value)` pair decoded to Strings: for tests, logs and the admin API, not the hot path.
    public var decoded: [(name: String, value: String)] {
        fields.indices.map { (name(at: $0), value(at: $0)) }
    }
}

extension HTTPRawHeaders {
    func string(_ range: Range<Int>) -> String {
        bytes.getString(at: bytes.readerIndex + range.lowerBound, length: range.count) ?? ""
    }

    func view(_ range: Range<Int>) -> ByteBufferView {
        bytes.readableBytesView[
            (bytes.readerIndex + range.lowerBound)..<(bytes.readerIndex + range.upperBound)]
    }
}
