import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import SidecarCore

/// `sidecar iptables --apply|--dry-run|--cleanup`: transparent interception's netfilter rules
/// for the current network namespace (DESIGN.md "Transparent interception"). The rules are
/// `InterceptionRules`' nftables script, fed to `nft -f -`; `--dry-run` prints that script.
struct IptablesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iptables",
        abstract: "Install, print or remove the rules that send the app's TCP through this sidecar.",
        usage: """
            sidecar iptables --apply|--dry-run|--cleanup --proxy-uid UID [--inbound-ports 8080,…]
                             [--exclude-outbound-cidrs 10.0.0.0/8,…] [--exclude-outbound-ports 22,…]
            """,
        discussion: """
            Rules go in one nftables table of their own (ip mesh_intercept) in the current network \
            namespace (run it there: ip netns exec NS sidecar iptables …); needs CAP_NET_ADMIN and \
            the nft command (Debian package nftables). --apply replaces that table atomically (applying \
            twice is applying once); --cleanup deletes it; --dry-run prints the nft script --apply runs \
            and changes nothing.

            Outbound TCP from every user but --proxy-uid (the sidecar's own user) goes to the outbound \
            port, except to loopback (the sidecar's own ports among them), to this host's own addresses, \
            and to the excluded CIDRs and ports. TCP from other hosts to --inbound-ports (the app's \
            ports) goes to the inbound port. IPv4 only. Run the sidecar with outbound.transparent: true \
            (and inbound.transparent: true with --inbound-ports); see README "Transparent interception".
            """)

    @Flag(name: .long, help: "Install the rules (replacing ours if present).")
    var apply = false

    @Flag(name: .long, help: "Print the nft script --apply would run; change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Remove our rules (a no-op when there are none).")
    var cleanup = false

    @Option(name: .long, help: "The user id the sidecar runs as; its own traffic is never redirected.")
    var proxyUid: UInt32?

    @Option(name: .long, help: "Comma-separated app ports whose inbound connections go to the inbound port.")
    var inboundPorts: String = ""

    @Option(name: .long, help: "Comma-separated IPv4 CIDRs reached directly, never through the sidecar.")
    var excludeOutboundCidrs: String = ""

    @Option(name: .long, help: "Comma-separated destination ports reached directly.")
    var excludeOutboundPorts: String = ""

    @Option(name: .long, help: "The sidecar's outbound port (outbound.listen).")
    var outboundPort: Int = 15001

    @Option(name: .long, help: "The sidecar's inbound port (inbound.listen).")
    var inboundPort: Int = 15006

    @Option(name: .long, help: "The nft program.")
    var nft: String = "nft"

    func validate() throws {
        guard [apply, dryRun, cleanup].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --apply, --dry-run, --cleanup")
        }
        if !cleanup, proxyUid == nil {
            throw ValidationError("--proxy-uid is required: the sidecar's user, whose traffic is not redirected")
        }
        for (name, port) in [("--outbound-port", outboundPort), ("--inbound-port", inboundPort)] where !(1...65535).contains(port) {
            throw ValidationError("\(name): \(port) is not a TCP port (1-65535)")
        }
    }

    func run() throws {
        let script: String
        if cleanup {
            script = InterceptionRules.cleanupScript
        } else {
            do {
                let rules = InterceptionRules(
                    proxyUID: proxyUid!, outboundPort: outboundPort, inboundPort: inboundPort,
                    inboundPorts: try InterceptionRules.ports(inboundPorts, option: "--inbound-ports"),
                    excludeOutboundCIDRs: try InterceptionRules.cidrs(excludeOutboundCidrs, option: "--exclude-outbound-cidrs"),
                    excludeOutboundPorts: try InterceptionRules.ports(excludeOutboundPorts, option: "--exclude-outbound-ports"))
                script = rules.applyScript
            } catch {
                throw ValidationError(error.description)
            }
        }
        if dryRun {
            print(script, terminator: "")
            return
        }
        try Self.runNft(nft, script: script)
    }

    /// `nft -f -` with the script on stdin; its own error output passes through.
    static func runNft(_ nft: String, script: String) throws {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else {
            FileHandleError.print("sidecar iptables: cannot make a pipe: \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[0], 0)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        let arguments = ["/usr/bin/env", nft, "-f", "-"]
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        close(pipeFDs[0])
        guard spawned == 0 else {
            close(pipeFDs[1])
            FileHandleError.print("sidecar iptables: cannot run \(nft): \(String(cString: strerror(spawned))) "
                                  + "(install Debian's nftables package)")
            throw ExitCode(1)
        }
        signal(SIGPIPE, SIG_IGN)  // nft exiting early is an EPIPE here, not the end of this process
        var bytes = Array(script.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(pipeFDs[1], $0.baseAddress, $0.count) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { break }  // nft exited early: its status says why
            bytes = bytes.dropFirst(written)
        }
        close(pipeFDs[1])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // WEXITSTATUS, or 128 + the signal (as a shell reports it).
        let exitStatus = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f
        guard exitStatus == 0 else {
            FileHandleError.print("sidecar iptables: \(nft) -f - failed with status \(exitStatus)"
                                  + (exitStatus == 127 ? " (nft not found: install Debian's nftables package)" : ""))
            throw ExitCode(1)
        }
    }
}
