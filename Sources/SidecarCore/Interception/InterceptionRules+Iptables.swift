/// The same rules for a host that has iptables (iptables-nft or legacy) but no `nft`: per
/// family, chains of our own in the `nat` table (`MESH_OUTPUT`, `MESH_PREROUTING`) fed to
/// `iptables-restore --noflush` / `ip6tables-restore --noflush`, and one jump to each from
/// the built-in chain. Nothing else in the table is touched.
///
/// `--noflush` empties a declared chain of ours before filling it, so the chains are replaced
/// atomically; the jumps are not (a restore appends them), so applying first removes ours
/// (`iptablesCleanup`), which makes applying twice the same as once.
extension InterceptionRules {
    /// Our chains in the `nat` table, and the built-in chain each hangs from.
    public static let iptablesChains = [("MESH_OUTPUT", "OUTPUT"), ("MESH_PREROUTING", "PREROUTING")]

    /// The programs of one family: `iptables`/`iptables-restore`, `ip6tables`/`ip6tables-restore`.
    public static func iptablesProgram(_ family: Family) -> String { family == .ipv4 ? "iptables" : "ip6tables" }

    /// What `iptables-restore --noflush` (IPv6: `ip6tables-restore`) reads for `family`.
    public func iptablesRestoreInput(_ family: Family) -> String {
        var lines = ["*nat", ":MESH_OUTPUT - [0:0]"]
        if !inboundPorts.isEmpty { lines.append(":MESH_PREROUTING - [0:0]") }
        lines += [
            "-A MESH_OUTPUT -m owner --uid-owner \(proxyUID) -j RETURN",
            "-A MESH_OUTPUT -d \(family.loopback) -j RETURN",
            "-A MESH_OUTPUT -m addrtype --dst-type LOCAL -j RETURN",
        ]
        lines += excluded(family).map { "-A MESH_OUTPUT -d \($0) -j RETURN" }
        lines += excludeOutboundPorts.map { "-A MESH_OUTPUT -p tcp --dport \($0) -j RETURN" }
        lines.append("-A MESH_OUTPUT -p tcp -j REDIRECT --to-ports \(outboundPort)")
        lines.append("-A OUTPUT -p tcp -j MESH_OUTPUT")
        if !inboundPorts.isEmpty {
            lines.append("-A MESH_PREROUTING -i lo -j RETURN")
            lines += inboundPorts.map { "-A MESH_PREROUTING -p tcp --dport \($0) -j REDIRECT --to-ports \(inboundPort)" }
            lines.append("-A PREROUTING -p tcp -j MESH_PREROUTING")
        }
        lines.append("COMMIT")
        return lines.joined(separator: "\n") + "\n"
    }

    /// What `--apply` does with iptables, as `--dry-run` prints it.
    public var iptablesApplyText: String {
        var text = "# sidecar iptables --apply: transparent interception (iptables; no nft on this host)\n"
            + "# first, as --cleanup: remove our jumps and chains\n"
        for family in Family.allCases {
            text += "# \(Self.iptablesProgram(family))-restore -w --noflush <<EOF\n" + iptablesRestoreInput(family) + "# EOF\n"
        }
        return text
    }

    /// The commands `--cleanup` runs for `family` (each may fail: nothing of ours to remove).
    /// A jump is deleted until none is left; then our chains are flushed and deleted.
    public static func iptablesCleanup(_ family: Family) -> [(command: [String], repeatUntilFailure: Bool)] {
        let program = iptablesProgram(family)
        var commands: [(command: [String], repeatUntilFailure: Bool)] = []
        for (chain, parent) in iptablesChains {
            commands.append(([program, "-w", "-t", "nat", "-D", parent, "-p", "tcp", "-j", chain], true))
        }
        for (chain, _) in iptablesChains {
            commands.append(([program, "-w", "-t", "nat", "-F", chain], false))
            commands.append(([program, "-w", "-t", "nat", "-X", chain], false))
        }
        return commands
    }
}
