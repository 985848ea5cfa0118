/// The netfilter rules of `sidecar iptables` (DESIGN.md "Transparent interception"), as the
/// nftables script `nft -f -` runs (or, on a host with iptables but no nft, the
/// `iptables-restore` input of `InterceptionRules+Iptables.swift`): a pure function of the
/// options, so `--dry-run` prints exactly what `--apply` feeds to the kernel's tools, and tests
/// read the rules without a kernel.
///
/// Everything lives in two tables of our own (`ip mesh_intercept` and `ip6 mesh_intercept`,
/// the same chains for IPv4 and IPv6), so applying is "replace those tables" in one atomic
/// transaction (apply twice = once) and cleanup is "delete them", which never touches anyone
/// else's rules. The script first declares each table and deletes it, so neither step fails
/// when the table is (or is not) there.
///
/// Outbound (nat `output`): TCP from every process but the sidecar's user goes to the outbound
/// port, except loopback destinations (the sidecar's own ports among them), this host's own
/// addresses, and the excluded CIDRs and ports. Inbound (nat `prerouting`): TCP arriving from
/// another host for one of the app's ports goes to the inbound port. nftables' `redirect`
/// sends locally made IPv6 connections to `[::1]`, where a transparent outbound also listens.
public struct InterceptionRules: Sendable, Equatable {
    /// The nftables tables (families `ip` and `ip6`) that hold every rule we install.
    public static let table = "mesh_intercept"

    /// The sidecar's user: its own connections (upstreams, passthrough) are never redirected.
    public var proxyUID: UInt32
    /// Where redirected outbound connections go (`outbound.listen`'s port).
    public var outboundPort: Int
    /// Where redirected inbound connections go (`inbound.listen`'s port).
    public var inboundPort: Int
    /// The app's ports whose connections from other hosts go to the inbound port.
    public var inboundPorts: [Int]
    /// Destinations (IPv4 and IPv6 CIDRs, normalized) reached directly, never through the sidecar.
    public var excludeOutboundCIDRs: [String]
    /// Destination ports reached directly.
    public var excludeOutboundPorts: [Int]

    public init(
        proxyUID: UInt32, outboundPort: Int = 15001, inboundPort: Int = 15006, inboundPorts: [Int] = [],
        excludeOutboundCIDRs: [String] = [], excludeOutboundPorts: [Int] = []
    ) {
        self.proxyUID = proxyUID
        self.outboundPort = outboundPort
        self.inboundPort = inboundPort
        self.inboundPorts = inboundPorts
        self.excludeOutboundCIDRs = excludeOutboundCIDRs
        self.excludeOutboundPorts = excludeOutboundPorts
    }

    /// The two address families, each with its own table and spelling.
    public enum Family: CaseIterable, Sendable {
        case ipv4, ipv6

        /// The nftables family (and the match keyword for a destination address).
        var nft: String { self == .ipv4 ? "ip" : "ip6" }
        var loopback: String { self == .ipv4 ? "127.0.0.0/8" : "::1/128" }

        func contains(cidr: String) -> Bool { cidr.contains(":") == (self == .ipv6) }
    }

    /// The excluded CIDRs of one family.
    func excluded(_ family: Family) -> [String] { excludeOutboundCIDRs.filter { family.contains(cidr: $0) } }

    /// The script `--apply` runs (and `--dry-run` prints): replaces our tables with these rules.
    public var applyScript: String {
        var lines = ["# sidecar iptables --apply: transparent interception (nft -f -)"]
        for family in Family.allCases {
            let table = "table \(family.nft) \(Self.table)"
            lines += [table, "delete " + table, table + " {",
                "\tchain output {",
                "\t\ttype nat hook output priority -100; policy accept;",
                "\t\tmeta l4proto != tcp return",
                "\t\tmeta skuid \(proxyUID) return",
                "\t\t\(family.nft) daddr \(family.loopback) return",
                "\t\tfib daddr type local return",
            ]
            let cidrs = excluded(family)
            if !cidrs.isEmpty { lines.append("\t\t\(family.nft) daddr \(Self.set(cidrs)) return") }
            if !excludeOutboundPorts.isEmpty { lines.append("\t\ttcp dport \(Self.set(excludeOutboundPorts.map(String.init))) return") }
            lines.append("\t\tmeta l4proto tcp redirect to :\(outboundPort)")
            lines.append("\t}")
            if !inboundPorts.isEmpty {
                lines += [
                    "\tchain prerouting {",
                    "\t\ttype nat hook prerouting priority -100; policy accept;",
                    "\t\tiifname \"lo\" return",
                    "\t\ttcp dport \(Self.set(inboundPorts.map(String.init))) redirect to :\(inboundPort)",
                    "\t}",
                ]
            }
            lines.append("}")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The script `--cleanup` runs: removes our tables (and nothing else); a no-op when absent.
    public static var cleanupScript: String {
        var lines = ["# sidecar iptables --cleanup: remove transparent interception (nft -f -)"]
        for family in Family.allCases {
            lines += ["table \(family.nft) \(table)", "delete table \(family.nft) \(table)"]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func set(_ items: [String]) -> String {
        items.count == 1 ? items[0] : "{ " + items.joined(separator: ", ") + " }"
    }
}

/// Parsing the command line's lists (`8080,9090`, `10.0.0.0/8,192.168.1.7`), with errors that
/// name the option.
extension InterceptionRules {
    public struct OptionError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// Comma-separated TCP ports 1–65535; empty text is no port. Duplicates are dropped.
    public static func ports(_ text: String, option: String) throws(OptionError) -> [Int] {
        guard !text.isEmpty else { return [] }
        var ports: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = item.trimmingSpaces
            guard let port = Int(trimmed), (1...65535).contains(port), trimmed.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw OptionError(description: "\(option): \"\(trimmed)\" is not a TCP port (1-65535; a list is comma-separated)")
            }
            if !ports.contains(port) { ports.append(port) }
        }
        return ports
    }

    /// Comma-separated IPv4 or IPv6 addresses or CIDRs (`10.0.0.0/8`, `fd00::/8`), normalized
    /// (`10.1.2.3` is `10.1.2.3/32`, host bits cleared, IPv6 in RFC 5952 text) so nftables and
    /// iptables accept them as they are.
    public static func cidrs(_ text: String, option: String) throws(OptionError) -> [String] {
        var result: [String] = []
        for item in text.split(separator: ",") {
            let trimmed = item.trimmingSpaces
            guard let cidr = normalizedCIDR(trimmed) else {
                throw OptionError(description: "\(option): \"\(trimmed)\" is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8)")
            }
            if !result.contains(cidr) { result.append(cidr) }
        }
        return result
    }

    static func normalizedCIDR(_ text: Substring) -> String? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return nil }
        let isIPv6 = parts[0].contains(":")
        let bits = isIPv6 ? 128 : 32
        var length = bits
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...bits).contains(parsed), parts[1].utf8.count <= 3,
                  parts[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
            else { return nil }
            length = parsed
        }
        if isIPv6 {
            guard var bytes = IPText.ipv6Bytes(parts[0]) else { return nil }
            for index in bytes.indices {
                let kept = max(0, min(8, length - index * 8))
                bytes[index] &= kept == 0 ? 0 : ~UInt8(0) << UInt8(8 - kept)
            }
            return "\(IPText.ipv6Text(bytes))/\(length)"
        }
        guard let address = IPText.value(parts[0]) else { return nil }
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
        return "\(IPText.text(address & mask))/\(length)"
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}
