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
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A:  // DIGIT, ALPHA
            return true
        case 0x21, 0x23...0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E:  // !#$%&'*+-.^_`|~
            return true
        default:
            return false
        }
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
