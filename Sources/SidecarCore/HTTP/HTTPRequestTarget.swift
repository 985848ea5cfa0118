#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request-target taken apart and normalized once, before routing and authorization, so the
/// path a rule matches is the path the upstream receives (DESIGN.md "Identity and trust").
///
/// Accepts origin-form (`/pay?x=1`), absolute-form `http://authority/path` (scheme in any case;
/// its authority replaces `Host`, RFC 9112 §3.2.2) and asterisk-form `*` (OPTIONS only). The
/// path is normalized the way Envoy's `normalize_path` + `merge_slashes` with
/// `path_with_escaped_slashes_action: REJECT_REQUEST` does:
/// - percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, other escapes
///   keep their bytes with upper-case hex (`%2e` → `.`, `%7e` → `~`, `%c3%a9` → `%C3%A9`);
/// - dot-segments are removed (RFC 3986 §5.2.4) and runs of `/` merged into one;
/// - refused (400): `%2F`, `%5C`, `%00` or a raw `\`; a fragment (`#`); an escape that is not `%` + two hex digits;
///   escapes that do not decode to valid UTF-8 (overlong forms such as `%C0%AE`); a segment that
///   is `.` or `..` once its `;` parameters are cut off (`..;x`, which servlet containers
///   resolve as `..`).
/// The query is kept as sent. The common case (a clean path) allocates nothing beyond the
/// `String`s handed out.
public struct HTTPRequestTarget: Sendable, Equatable {
    /// The authority of an absolute-form target; nil for origin- and asterisk-form.
    public let authority: String?
    /// The normalized path (`*` for asterisk-form); always starts with `/` otherwise.
    public let path: String
    /// The query without its `?`, as sent; nil when there is none.
    public let query: Substring?
    /// Whether the target must be written anew upstream (absolute-form, or the path changed).
    public let isRewritten: Bool

    /// Why a target was refused; the text goes into the 400's detail.
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The origin-form target to send upstream: `path` plus `?query`.
    public var originForm: String {
        guard let query else { return path }
        return path + "?" + query
    }

    public init(parsing target: String) throws(Refusal) {
        if target == "*" {
            self.authority = nil
            self.path = "*"
            self.query = nil
            self.isRewritten = false
            return
        }
        var rest = Substring(target)
        guard !Self.contains(UInt8(ascii: "#"), in: target) else { throw Refusal("request-target has a fragment (#)") }
        var authority: String?
        if rest.utf8.first != UInt8(ascii: "/") {
            guard let schemeEnd = rest.firstRange(of: "://"),
                rest[..<schemeEnd.lowerBound].lowercased() == "http"
            else {
                throw Refusal("request-target \"\(Self.printable(target))\" is neither a path nor an http:// URL")
            }
            rest = rest[schemeEnd.upperBound...]
            let end = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
            let host = rest[..<end]
            guard !host.isEmpty, !host.contains("@") else {
                throw Refusal("absolute-form target needs a host and no userinfo")
            }
            authority = String(host)
            rest = rest[end...]
        }
        // Byte-level: "?" is ASCII, so its UTF-8 index is a valid index of `rest`.
        let queryStart = Self.contains(UInt8(ascii: "?"), in: target) ? rest.utf8.firstIndex(of: UInt8(ascii: "?")) : nil
        let rawPath = queryStart.map { rest[..<$0] } ?? rest
        self.query = queryStart.map { rest[rest.utf8.index(after: $0)...] }
        self.authority = authority
        if rawPath.isEmpty {
            self.path = "/"
            self.isRewritten = true
            return
        }
        if let normalized = try Self.normalize(rawPath.utf8) {
            self.path = normalized
            self.isRewritten = true
        } else {
            self.path = String(rawPath)
            self.isRewritten = authority != nil
        }
    }

    /// Per request: `memchr` over the contiguous bytes (a generic walk of the view costs
    /// several instructions a byte).
    private static func contains(_ byte: UInt8, in text: String) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.count > 0 && memchr(bytes.baseAddress!, Int32(byte), bytes.count) != nil
        } ?? text.utf8.contains(byte)
    }

    /// Whether `path` lies under `prefix` by whole segments, as Gateway API's PathPrefix:
    /// `/pay` (or `/pay/`) matches `/pay` and `/pay/x`, not `/payroll`; `/` matches everything.
    /// Byte by byte (paths compare as bytes, RFC 3986 §6.2.1; this runs per request and rule).
    public static func path<P: StringProtocol>(_ path: P, hasSegmentPrefix prefix: String) -> Bool {
        // Per request (routing, authorization): over contiguous bytes when both have them;
        // slicing `UTF8View`s cost about a thousand instructions a match.
        let contiguous: Bool?? = path.utf8.withContiguousStorageIfAvailable { pathBytes in
            prefix.utf8.withContiguousStorageIfAvailable { prefixBytes in
                Self.bytes(pathBytes, haveSegmentPrefix: prefixBytes)
            }
        }
        if let contiguous, let answer = contiguous { return answer }
        let slash = UInt8(ascii: "/")
        var prefix = prefix.utf8[...]
        while prefix.count > 1, prefix.last == slash { prefix = prefix.dropLast() }
        let path = path.utf8
        if prefix.count == 1, prefix.first == slash { return path.first == slash }
        guard path.starts(with: prefix) else { return false }
        let next = path.dropFirst(prefix.count).first
        return next == nil || next == slash
    }

    private static func bytes(_ path: UnsafeBufferPointer<UInt8>, haveSegmentPrefix prefix: UnsafeBufferPointer<UInt8>) -> Bool {
        let slash = UInt8(ascii: "/")
        var length = prefix.count
        while length > 1, prefix[length - 1] == slash { length -= 1 }
        if length == 1, prefix[0] == slash { return path.first == slash }
        guard path.count >= length else { return false }
        for index in 0..<length where path[index] != prefix[index] { return false }
        return path.count == length || path[length] == slash
    }

    // MARK: Normalization

    /// The normalized path, or nil when `raw` is already normal (the fast path: one scan).
    static func normalize(_ raw: Substring.UTF8View) throws(Refusal) -> String? {
        guard raw.first == UInt8(ascii: "/") else { throw Refusal("path must start with /") }
        // Over the contiguous bytes when there are some (walking the view costs ~20 instructions a byte).
        let contiguous = raw.withContiguousStorageIfAvailable { bytes in Result { () throws(Refusal) in try isAlreadyNormal(bytes) } }
        let normal: Bool
        if let contiguous { normal = try contiguous.get() } else { normal = try isAlreadyNormal(raw) }
        if normal { return nil }
        // Decode unreserved escapes; keep the rest encoded (upper-case hex).
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var escapedBytes: [UInt8] = []  // every escaped byte, to check they form UTF-8
        var index = raw.startIndex
        while index != raw.endIndex {
            let byte = raw[index]
            guard byte == UInt8(ascii: "%") else {
                try checkUTF8(&escapedBytes)
                decoded.append(byte)
                index = raw.index(after: index)
                continue
            }
            let high = raw.index(after: index)
            guard high != raw.endIndex, raw.index(after: high) != raw.endIndex,
                let h = HTTPGrammar.hexValue(raw[high]), let l = HTTPGrammar.hexValue(raw[raw.index(after: high)])
            else { throw Refusal("path has a % not followed by two hex digits") }
            let value = h << 4 | l
            switch value {
            case 0x2F: throw Refusal("path has an encoded slash (%2F)")
            case 0x5C: throw Refusal("path has an encoded backslash (%5C)")
            case 0x00: throw Refusal("path has an encoded NUL (%00)")
            default: break
            }
            if value >= 0x80 { escapedBytes.append(value) } else { try checkUTF8(&escapedBytes) }
            if Self.isUnreserved(value) {
                decoded.append(value)
            } else {
                decoded.append(UInt8(ascii: "%"))
                decoded.append(Self.upperHex(value >> 4))
                decoded.append(Self.upperHex(value & 0xF))
            }
            index = raw.index(high, offsetBy: 2)
        }
        try checkUTF8(&escapedBytes)
        return try removeDotSegments(decoded)
    }

    /// One scan: no `%`, no `\`, no `//`, no `.`/`..` segment (with or without `;` parameters).
    private static func isAlreadyNormal(_ raw: some Sequence<UInt8>) throws(Refusal) -> Bool {
        var previous: UInt8 = 0
        var segmentStart = true
        var dots = 0  // dots since the segment started, while the segment is only dots
        for byte in raw {
            switch byte {
            case UInt8(ascii: "%"): return false
            case UInt8(ascii: "\\"): throw Refusal("path has a backslash")
            case 0: throw Refusal("path has a NUL")
            case UInt8(ascii: "/"):
                if previous == UInt8(ascii: "/") || (dots > 0 && segmentStart) { return false }
                segmentStart = true
                dots = 0
            case UInt8(ascii: "."):
                if segmentStart { dots += 1 }
            case UInt8(ascii: ";"):
                if segmentStart, dots > 0 { return false }
                segmentStart = false
            default:
                segmentStart = false
                dots = 0
            }
            previous = byte
        }
        return !(segmentStart && dots > 0)
    }

    /// RFC 3986 §5.2.4 over whole segments, merging empty segments; `..` above the root stays at the root.
    private static func removeDotSegments(_ bytes: [UInt8]) throws(Refusal) -> String {
        var segments: [ArraySlice<UInt8>] = []
        var trailingSlash = false
        for segment in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            if segment.contains(UInt8(ascii: "\\")) { throw Refusal("path has a backslash") }
            let name = segment.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
            let isDot = name.elementsEqual(".".utf8)
            let isDotDot = name.elementsEqual("..".utf8)
            if (isDot || isDotDot), name.count != segment.count {
                throw Refusal("path has a dot-segment with ; parameters")
            }
            trailingSlash = false
            if isDot || segment.isEmpty {
                trailingSlash = true
            } else if isDotDot {
                if !segments.isEmpty { segments.removeLast() }
                trailingSlash = true
            } else {
                segments.append(segment)
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for segment in segments {
            out.append(UInt8(ascii: "/"))
            out.append(contentsOf: segment)
        }
        if out.isEmpty || trailingSlash { out.append(UInt8(ascii: "/")) }
        return String(decoding: out, as: UTF8.self)
    }

    /// The escaped bytes collected since the last plain byte must be whole, shortest-form UTF-8.
    private static func checkUTF8(_ bytes: inout [UInt8]) throws(Refusal) {
        guard !bytes.isEmpty else { return }
        defer { bytes.removeAll(keepingCapacity: true) }
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw Refusal("path has percent-encoded bytes that are not valid UTF-8")
        }
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func upperHex(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
    }

    private static func printable(_ target: String) -> String {
        String(target.prefix(80))
    }
}
