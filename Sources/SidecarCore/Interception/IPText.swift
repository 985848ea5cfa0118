#if canImport(Glibc)
import Glibc
#endif

/// IP literals as values and back, for CIDRs (`sidecar iptables`) and for matching an
/// intercepted connection's original destination against the registry's addresses in one
/// canonical spelling (`10.77.0.2`, never `010.77.0.02`; `fd77::2`, never `FD77:0:0::2`).
/// IPv6 text is RFC 5952's, as `inet_ntop` writes it (and as `SO_ORIGINAL_DST` is read).
enum IPText {
    /// The address as a host-order value; nil unless four decimal octets 0–255.
    static func value(_ text: some StringProtocol) -> UInt32? {
        guard HostPort.isIPv4(text) else { return nil }
        var value: UInt32 = 0
        for part in text.split(separator: ".") {
            guard let octet = UInt32(part) else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    static func text(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    /// An IPv6 literal (no brackets) as its 16 bytes; nil for anything else.
    static func ipv6Bytes(_ text: some StringProtocol) -> [UInt8]? {
        guard HostPort.isIPv6(text) else { return nil }
        var address = in6_addr()
        guard inet_pton(AF_INET6, String(text), &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// The RFC 5952 text of 16 address bytes (`in6_addr` order).
    static func ipv6Text(_ bytes: [UInt8]) -> String {
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes.prefix(16)) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return "" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The canonical spelling of an IP literal; other text (host names) lowercased.
    static func canonical(_ text: String) -> String {
        if let value = value(text) { return Self.text(value) }
        if let bytes = ipv6Bytes(text) { return ipv6Text(bytes) }
        return text.lowercased()
    }
}
