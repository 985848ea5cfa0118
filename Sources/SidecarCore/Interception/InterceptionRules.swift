/// The netfilter rules of `sidecar iptables` (DESIGN.md "Transparent interception"), as the
/// nftables script `nft -f -` runs: a pure function of the options, so `--dry-run` prints
/// exactly what `--apply` feeds to `nft`, and tests read the rules without a kernel.
///
/// Everything lives in one table of our own (`ip mesh_intercept`), so applying is "replace that
/// table" in one atomic transaction (apply twice = once) and cleanup is "delete that table",
/// which never touches anyone else's rules. The script first declares the table and deletes it,
/// so neither step fails when the table is (or is not) there.
///
/// Outbound (nat `output`): TCP from every process but the sidecar's user goes to the outbound
/// port, except loopback destinations (the sidecar's own ports among them), this host's own
/// addresses, and the excluded CIDRs and ports. Inbound (nat `prerouting`): TCP arriving from
/// another host for one of the app's ports goes to the inbound port. IPv4 only.
public struct InterceptionRules: Sendable, Equatable {
    /// The nftables table (family `ip`) that holds every rule we install.
    public static let table = "mesh_intercept"

    /// The sidecar's user: its own connections (upstreams, passthrough) are never redirected.
    public var proxyUID: UInt32
    /// Where redirected outbound connections go (`outbound.listen`'s port).
    public var outboundPort: Int
    /// Where redirected inbound connections go (`inbound.listen`'s port).
    public var inboundPort: Int
    /// The app's ports whose connections from other hosts go to the inbound port.
    public var inboundPorts: [Int]
    /// Destinations (IPv4 CIDRs, normalized) reached directly, never through the sidecar.
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

    /// The script `--apply` runs (and `--dry-run` prints): replaces our table with these rules.
    public var applyScript: String {
        var lines = [
            "# sidecar iptables --apply: transparent interception (nft -f -)",
            "table ip \(Self.table)",
            "delete table ip \(Self.table)",
            "table ip \(Self.table) {",
            "\tchain output {",
            "\t\ttype nat hook output priority -100; policy accept;",
            "\t\tmeta l4proto != tcp return",
            "\t\tmeta skuid \(proxyUID) return",
            "\t\tip daddr 127.0.0.0/8 return",
            "\t\tfib daddr type local return",
        ]
        if !excludeOutboundCIDRs.isEmpty { lines.append("\t\tip daddr \(Self.set(excludeOutboundCIDRs)) return") }
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
        return lines.joined(separator: "\n") + "\n"
    }

    /// The script `--cleanup` runs: removes our table (and nothing else); a no-op when absent.
    public static var cleanupScript: String {
        """
        # sidecar iptables --cleanup: remove transparent interception (nft -f -)
        table ip \(table)
        delete table ip \(table)

        """
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

    /// Comma-separated IPv4 addresses or CIDRs (`10.0.0.0/8`), normalized (`10.1.2.3` is
    /// `10.1.2.3/32`, host bits cleared) so nftables accepts them as set elements.
    public static func cidrs(_ text: String, option: String) throws(OptionError) -> [String] {
        var result: [String] = []
        for item in text.split(separator: ",") {
            let trimmed = item.trimmingSpaces
            guard let cidr = normalizedCIDR(trimmed) else {
                throw OptionError(description: "\(option): \"\(trimmed)\" is not an IPv4 address or CIDR (e.g. 10.0.0.0/8)")
            }
            if !result.contains(cidr) { result.append(cidr) }
        }
        return result
    }

    static func normalizedCIDR(_ text: Substring) -> String? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPv4Text.value(parts[0]) else { return nil }
        var length = 32
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...32).contains(parsed), parts[1].utf8.count <= 2 else { return nil }
            length = parsed
        }
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
        return "\(IPv4Text.text(address & mask))/\(length)"
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
