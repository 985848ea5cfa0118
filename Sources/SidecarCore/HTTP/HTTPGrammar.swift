/// The byte classes of RFC 9110/9112 that the HTTP/1.1 framing code checks against.
///
/// Pure functions over single bytes, with no tables to initialise lazily, so every check
/// inlines into the scanning loops.
enum HTTPGrammar {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let sp: UInt8 = 0x20
    static let htab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C
    static let semicolon: UInt8 = 0x3B

    /// `tchar` (RFC 9110 §5.6.2).
    @inline(__always)
    static func isTokenByte(_ b: UInt8) -> Bool {
        // One bit per byte value below 0x80 (a shift and a mask per byte where the range
        // checks cost a chain of compares): DIGIT, ALPHA and !#$%&'*+-.^_`|~.
        if b < 64 { return (0x03FF_6CFA_0000_0000 as UInt64) >> b & 1 != 0 }
        if b < 128 { return (0x57FF_FFFF_C7FF_FFFE as UInt64) >> (b &- 64) & 1 != 0 }
        return false
    }

    /// `field-vchar / SP / HTAB` (RFC 9110 §5.5): anything but controls other than HTAB.
    @inline(__always)
    static func isFieldValueByte(_ b: UInt8) -> Bool {
        b == htab || (b >= 0x20 && b != 0x7F)
    }

    /// VCHAR only: what we accept in a request-target (no spaces, controls or non-ASCII).
    @inline(__always)
    static func isVisibleASCII(_ b: UInt8) -> Bool {
        b > 0x20 && b < 0x7F
    }

    @inline(__always)
    static func isWhitespace(_ b: UInt8) -> Bool {
        b == sp || b == htab
    }

    @inline(__always)
    static func isDigit(_ b: UInt8) -> Bool {
        b >= 0x30 && b <= 0x39
    }

    /// The hexadecimal digit of `nibble` (0–15): `0`–`9`, then `a`–`f` (or `A`–`F`).
    @inline(__always)
    static func hexDigit(_ nibble: UInt8, uppercase: Bool = false) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") &+ nibble : (uppercase ? UInt8(ascii: "A") : UInt8(ascii: "a")) &+ (nibble &- 10)
    }

    /// `value`'s 16 lowercase hex digits, most significant first, at `out` (ids: trace, span,
    /// request).
    @inline(__always)
    static func writeHex(_ value: UInt64, to out: UnsafeMutablePointer<UInt8>) {
        let raw = UnsafeMutableRawPointer(out)
        raw.storeBytes(of: hexWord(UInt32(truncatingIfNeeded: value >> 32)).littleEndian, as: UInt64.self)
        raw.storeBytes(of: hexWord(UInt32(truncatingIfNeeded: value)).littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// `value`'s 8 hex digits as the bytes of a word, the most significant digit in the lowest
    /// byte (so a little-endian store writes them in order): each nibble spread to a byte, then
    /// `0`…`9` or `a`…`f` added to all eight at once.
    @inline(__always)
    private static func hexWord(_ value: UInt32) -> UInt64 {
        var spread = UInt64(value)
        spread = (spread | spread << 16) & 0x0000_FFFF_0000_FFFF
        spread = (spread | spread << 8) & 0x00FF_00FF_00FF_00FF
        spread = (spread | spread << 4) & 0x0F0F_0F0F_0F0F_0F0F  // byte i: nibble i (i = 0 least significant)
        let letters = ((spread &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101  // 1 where the nibble is ≥ 10
        let ascii = spread &+ 0x3030_3030_3030_3030 &+ letters &* 0x27  // '0' + n, or 'a' + n - 10
        return ascii.byteSwapped
    }

    /// The number that eight lowercase hex digits spell, read as one word (`word` loaded
    /// little-endian, so its lowest byte is the most significant digit); nil when a byte is not
    /// `0`…`9` or `a`…`f`. The inverse of `hexWord`: each byte's low nibble, plus 9 for letters,
    /// checked by spelling the digits again and comparing.
    @inline(__always)
    static func hexValue(ofWord word: UInt64) -> UInt32? {
        let nibbles = (word & 0x0F0F_0F0F_0F0F_0F0F) &+ ((word >> 6) & ones) &* 9
        guard (nibbles &+ 0x7070_7070_7070_7070) & highs == 0 else { return nil }  // a letter past `f`
        let letters = ((nibbles &+ 0x0606_0606_0606_0606) >> 4) & ones
        guard nibbles &+ 0x3030_3030_3030_3030 &+ letters &* 0x27 == word else { return nil }
        var packed = nibbles.byteSwapped  // byte i: digit 7 - i
        packed = (packed | packed >> 4) & 0x00FF_00FF_00FF_00FF
        packed = (packed | packed >> 8) & 0x0000_FFFF_0000_FFFF
        packed = (packed | packed >> 16) & 0x0000_0000_FFFF_FFFF
        return UInt32(truncatingIfNeeded: packed)
    }

    // Eight bytes at a time, for the scanners that look at every byte of a head or a log line:
    // whether any byte of `word` is below `bound` (≤ 0x80), or equal to `byte`. Exact for the
    // word as a whole (a borrow can only mark a byte above one that matched).
    private static let ones: UInt64 = 0x0101_0101_0101_0101
    private static let highs: UInt64 = 0x8080_8080_8080_8080

    @inline(__always)
    static func word(_ word: UInt64, hasByteBelow bound: UInt8) -> Bool {
        (word &- ones &* UInt64(bound)) & ~word & highs != 0
    }

    @inline(__always)
    static func word(_ word: UInt64, hasByte byte: UInt8) -> Bool {
        let marked = word ^ (ones &* UInt64(byte))
        return (marked &- ones) & ~marked & highs != 0
    }

    /// The value of a hexadecimal digit, or nil.
    @inline(__always)
    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b &- 0x30
        case 0x41...0x46: return b &- 0x41 &+ 10
        case 0x61...0x66: return b &- 0x61 &+ 10
        default: return nil
        }
    }

    @inline(__always)
    static func lowercased(_ b: UInt8) -> UInt8 {
        (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
    }

    /// Case-insensitive ASCII comparison of `bytes` with a lowercase literal.
    @inline(__always)
    static func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        let lit = literal.utf8Start
        for i in 0..<bytes.count where lowercased(bytes[i]) != lit[i] {
            return false
        }
        return true
    }

    /// Case-insensitive ASCII comparison of two byte runs.
    @inline(__always)
    static func equalsIgnoringCase(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where lowercased(a[i]) != lowercased(b[i]) {
            return false
        }
        return true
    }

    /// Case-insensitive ASCII comparison of bytes with any string (no allocation).
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ string: String) -> Bool {
        equals(bytes, string, folding: lowercased)
    }

    /// Whether a received field name is the same header as `string` to an app framework that
    /// folds case and reads `_` as `-` (CGI/WSGI turn both `X-Mesh-Caller` and `x_mesh_caller`
    /// into `HTTP_X_MESH_CALLER`). Used for the names the mesh sets, so no spelling slips past.
    static func equalsAsFieldName(_ bytes: UnsafeRawBufferPointer, _ string: String) -> Bool {
        equals(bytes, string) { $0 == UInt8(ascii: "_") ? UInt8(ascii: "-") : lowercased($0) }
    }

    @inline(__always)
    private static func equals(_ bytes: UnsafeRawBufferPointer, _ string: String, folding fold: (UInt8) -> UInt8) -> Bool {
        let utf8 = string.utf8
        guard bytes.count == utf8.count else { return false }
        // Over the string's contiguous bytes (names are compared several times per request);
        // iterating `String.UTF8View` costs several times as much per byte.
        if let equal = utf8.withContiguousStorageIfAvailable({ other in
            for i in 0..<other.count where fold(bytes[i]) != fold(other[i]) { return false }
            return true
        }) {
            return equal
        }
        var i = 0
        for c in utf8 {
            if fold(bytes[i]) != fold(c) { return false }
            i += 1
        }
        return true
    }
}
