/// Where one header line lies inside its head's bytes: offsets, not Strings.
///
/// Offsets are relative to the start of `HTTPRawHeaders.bytes` (the head's own slice). The
/// name starts at `lineStart`; `lineEnd` includes the CRLF so a kept line is copied verbatim.
public struct HTTPHeaderField: Sendable, Hashable {
    var lineStart: UInt32
    var nameLength: UInt32
    var valueStart: UInt32
    var valueEnd: UInt32
    var lineEnd: UInt32
    /// What the name means to the framing layer.
    public internal(set) var known: HTTPKnownHeader
    /// True when the field must not be forwarded: hop-by-hop by definition or named in Connection.
    public internal(set) var isHopByHop: Bool

    var nameRange: Range<Int> { Int(lineStart)..<Int(lineStart + nameLength) }
    var valueRange: Range<Int> { Int(valueStart)..<Int(valueEnd) }
    var lineRange: Range<Int> { Int(lineStart)..<Int(lineEnd) }
}
