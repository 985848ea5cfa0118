/// IPv4 dotted quads as 32-bit values and back, for CIDRs (`sidecar iptables`) and for
/// matching an intercepted connection's original destination against the registry's
/// addresses in one canonical spelling (`10.77.0.2`, never `010.77.0.02`).
enum IPv4Text {
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

    /// The canonical spelling of an IPv4 literal; other text (IPv6, host names) as it is.
    static func canonical(_ text: String) -> String {
        value(text).map(Self.text) ?? text.lowercased()
    }
}
