import Testing

@testable import SidecarCore

/// `sidecar iptables`' rules as text: what `--apply` runs and `--dry-run` prints.
@Suite struct InterceptionRulesTests {
    @Test func theScriptReplacesOurTablesWithEveryExclusionBeforeTheRedirect() {
        let rules = InterceptionRules(
            proxyUID: 1337, outboundPort: 15001, inboundPort: 15006, inboundPorts: [8080, 9090],
            excludeOutboundCIDRs: ["10.96.0.0/12", "fd00::/8"], excludeOutboundPorts: [22, 5432])
        #expect(rules.applyScript == """
            # sidecar iptables --apply: transparent interception (nft -f -)
            table ip mesh_intercept
            delete table ip mesh_intercept
            table ip mesh_intercept {
            \tchain output {
            \t\ttype nat hook output priority -100; policy accept;
            \t\tmeta l4proto != tcp return
            \t\tmeta skuid 1337 return
            \t\tip daddr 127.0.0.0/8 return
            \t\tfib daddr type local return
            \t\tip daddr 10.96.0.0/12 return
            \t\ttcp dport { 22, 5432 } return
            \t\tmeta l4proto tcp redirect to :15001
            \t}
            \tchain prerouting {
            \t\ttype nat hook prerouting priority -100; policy accept;
            \t\tiifname "lo" return
            \t\ttcp dport { 8080, 9090 } redirect to :15006
            \t}
            }
            table ip6 mesh_intercept
            delete table ip6 mesh_intercept
            table ip6 mesh_intercept {
            \tchain output {
            \t\ttype nat hook output priority -100; policy accept;
            \t\tmeta l4proto != tcp return
            \t\tmeta skuid 1337 return
            \t\tip6 daddr ::1/128 return
            \t\tfib daddr type local return
            \t\tip6 daddr fd00::/8 return
            \t\ttcp dport { 22, 5432 } return
            \t\tmeta l4proto tcp redirect to :15001
            \t}
            \tchain prerouting {
            \t\ttype nat hook prerouting priority -100; policy accept;
            \t\tiifname "lo" return
            \t\ttcp dport { 8080, 9090 } redirect to :15006
            \t}
            }

            """)
    }

    @Test func withoutInboundPortsOrExclusionsOnlyTheOutboundChainIsInstalled() {
        let script = InterceptionRules(proxyUID: 0, outboundPort: 16001).applyScript
        #expect(!script.contains("prerouting"))
        #expect(!script.contains("dport"))
        #expect(script.contains("meta skuid 0 return\n"))
        #expect(script.hasSuffix("\t\tmeta l4proto tcp redirect to :16001\n\t}\n}\n"))
    }

    @Test func cleanupDeletesOnlyOurTablesAndIsANoOpWhenTheyAreAbsent() {
        #expect(InterceptionRules.cleanupScript == """
            # sidecar iptables --cleanup: remove transparent interception (nft -f -)
            table ip mesh_intercept
            delete table ip mesh_intercept
            table ip6 mesh_intercept
            delete table ip6 mesh_intercept

            """)
    }

    @Test func theIptablesFallbackFillsChainsOfOurOwnPerFamily() {
        let rules = InterceptionRules(
            proxyUID: 1337, inboundPorts: [8080], excludeOutboundCIDRs: ["10.96.0.0/12", "fd00::/8"], excludeOutboundPorts: [22])
        #expect(rules.iptablesRestoreInput(.ipv6) == """
            *nat
            :MESH_OUTPUT - [0:0]
            :MESH_PREROUTING - [0:0]
            -A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN
            -A MESH_OUTPUT -d ::1/128 -j RETURN
            -A MESH_OUTPUT -m addrtype --dst-type LOCAL -j RETURN
            -A MESH_OUTPUT -d fd00::/8 -j RETURN
            -A MESH_OUTPUT -p tcp --dport 22 -j RETURN
            -A MESH_OUTPUT -p tcp -j REDIRECT --to-ports 15001
            -A OUTPUT -p tcp -j MESH_OUTPUT
            -A MESH_PREROUTING -i lo -j RETURN
            -A MESH_PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 15006
            -A PREROUTING -p tcp -j MESH_PREROUTING
            COMMIT

            """)
        let ipv4 = rules.iptablesRestoreInput(.ipv4)
        #expect(ipv4.contains("-A MESH_OUTPUT -d 127.0.0.0/8 -j RETURN\n-A MESH_OUTPUT -m addrtype"))
        #expect(ipv4.contains("-d 10.96.0.0/12 -j RETURN") && !ipv4.contains("fd00"))
        #expect(!InterceptionRules(proxyUID: 0).iptablesRestoreInput(.ipv4).contains("PREROUTING"))
        // Cleanup: every jump of ours first (until none is left), then our chains.
        #expect(InterceptionRules.iptablesCleanup(.ipv6).map { $0.command.joined(separator: " ") } == [
            "ip6tables -w -t nat -D OUTPUT -p tcp -j MESH_OUTPUT", "ip6tables -w -t nat -D PREROUTING -p tcp -j MESH_PREROUTING",
            "ip6tables -w -t nat -F MESH_OUTPUT", "ip6tables -w -t nat -X MESH_OUTPUT",
            "ip6tables -w -t nat -F MESH_PREROUTING", "ip6tables -w -t nat -X MESH_PREROUTING",
        ])
    }

    @Test func portListsAreCheckedAndDeduplicated() throws {
        #expect(try InterceptionRules.ports("", option: "--inbound-ports") == [])
        #expect(try InterceptionRules.ports("8080, 9090,8080", option: "--inbound-ports") == [8080, 9090])
        for bad in ["0", "65536", "80,", "http", "+80", "8080 9090"] {
            #expect(throws: InterceptionRules.OptionError(
                description: "--inbound-ports: \"\(bad == "80," ? "" : bad)\" is not a TCP port (1-65535; a list is comma-separated)")
            ) { try InterceptionRules.ports(bad, option: "--inbound-ports") }
        }
    }

    @Test func cidrsAreNormalizedForNftables() throws {
        #expect(try InterceptionRules.cidrs("10.1.2.3, 10.1.2.3/8,192.168.7.9/24,0.0.0.0/0", option: "--x")
            == ["10.1.2.3/32", "10.0.0.0/8", "192.168.7.0/24", "0.0.0.0/0"])
        #expect(try InterceptionRules.cidrs("FD77:0::1, fd77::1/64,2001:db8:ffff::/33,::/0", option: "--x")
            == ["fd77::1/128", "fd77::/64", "2001:db8:8000::/33", "::/0"])
        for bad in ["10.0.0.0/33", "10.0.0/8", "example.com", "10.0.0.0/", "10.0.0.0/8/8", "fd77::/129", "fd77:::1", "::1/+8"] {
            #expect(throws: InterceptionRules.OptionError.self) { try InterceptionRules.cidrs(bad, option: "--x") }
        }
    }
}
