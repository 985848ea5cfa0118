#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The name a `Host` (or `:authority`, or proxy-form authority) gives: the port removed (an IPv6
/// literal keeps its brackets), lower-cased. Per request, so byte-level: no grapheme walk, and
/// no lower-casing copy when the name is lower case already (as it nearly always is).
enum HostName {
    /// `payments:80` → `payments`; with `droppingSuffix: ".mesh"`, `Payments.mesh` → `payments`.
    static func of(_ host: Substring, droppingSuffix suffix: StaticString? = nil) -> String {
        let name = withoutPort(host)
        // Over the contiguous bytes: the suffix compared and the case checked in place, and the
        // String made by one copy (walking `Substring.UTF8View` costs tens of instructions a byte).
        let made: String? = name.utf8.withContiguousStorageIfAvailable { bytes in
            var count = bytes.count
            if let suffix, count >= suffix.utf8CodeUnitCount,
                memcmp(bytes.baseAddress! + count - suffix.utf8CodeUnitCount, suffix.utf8Start, suffix.utf8CodeUnitCount) == 0
            {
                count -= suffix.utf8CodeUnitCount
            }
            let kept = UnsafeBufferPointer(rebasing: bytes[..<count])
            let text = String(decoding: kept, as: UTF8.self)
            let lowerASCII = kept.allSatisfy { $0 < 0x80 && !($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) }
            return lowerASCII ? text : text.lowercased()
        }
        if let made { return made }
        var bytes = name.utf8[...]
        if let suffix {
            let suffixBytes = UnsafeBufferPointer(start: suffix.utf8Start, count: suffix.utf8CodeUnitCount)
            if bytes.count >= suffixBytes.count, bytes.suffix(suffixBytes.count).elementsEqual(suffixBytes) {
                bytes = bytes.dropLast(suffixBytes.count)
            }
        }
        return String(Substring(bytes)).lowercased()
    }

    /// `payments:80` → `payments`, `[::1]:80` → `[::1]`; an IPv6 literal without a port is kept whole.
    /// Per request: over the contiguous bytes (walking `Substring.UTF8View` backwards costs
    /// tens of instructions a byte).
    static func withoutPort(_ host: Substring) -> Substring {
        let found = host.utf8.withContiguousStorageIfAvailable { bytes -> Int? in
            guard let last = bytes.last, last != UInt8(ascii: "]") else { return nil }
            var index = bytes.count - 1
            while index > 0, bytes[index] != UInt8(ascii: ":") { index -= 1 }
            return bytes[index] == UInt8(ascii: ":") ? index : nil
        }
        if let found {
            guard let colon = found else { return host }
            return host[..<host.utf8.index(host.startIndex, offsetBy: colon)]
        }
        let bytes = host.utf8
        guard let colon = bytes.lastIndex(of: UInt8(ascii: ":")), bytes.last != UInt8(ascii: "]") else { return host }
        return host[..<colon]
    }
}
