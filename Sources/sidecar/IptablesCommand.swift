import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import SidecarCore

/// `sidecar iptables --apply|--dry-run|--cleanup`: transparent interception's netfilter rules
/// for the current network namespace (DESIGN.md "Transparent interception"). The rules are
/// `InterceptionRules`' nftables script, fed to `nft -f -`, or on a host with iptables but no
/// nft its `iptables-restore` input; `--dry-run` prints what `--apply` would feed.
struct IptablesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iptables",
        abstract: "Install, print or remove the rules that send the app's TCP through this sidecar.",
        usage: """
            sidecar iptables --apply|--dry-run|--cleanup --proxy-uid UID [--inbound-ports 8080,…]
                             [--exclude-outbound-cidrs 10.0.0.0/8,…] [--exclude-outbound-ports 22,…]
                             [--backend auto|nft|iptables]
            """,
        discussion: """
            Rules go in nftables tables of their own (ip mesh_intercept and ip6 mesh_intercept) in the \
            current network namespace (run it there: ip netns exec NS sidecar iptables …); needs \
            CAP_NET_ADMIN and the nft command (Debian package nftables). Where there is no nft but \
            iptables (iptables-nft or legacy, with ip6tables), the same rules go in chains of our own \
            (MESH_OUTPUT, MESH_PREROUTING) of the nat tables instead (--backend picks one). --apply \
            replaces our rules (applying twice is applying once); --cleanup deletes them; --dry-run \
            prints what --apply feeds to nft (or iptables-restore) and changes nothing.

            Outbound TCP from every user but --proxy-uid (the sidecar's own user) goes to the outbound \
            port, except to loopback (the sidecar's own ports among them), to this host's own addresses, \
            and to the excluded CIDRs and ports. TCP from other hosts to --inbound-ports (the app's \
            ports) goes to the inbound port. IPv4 and IPv6 alike: redirected IPv6 connections arrive \
            at [::1] on the outbound port (a transparent outbound on 127.0.0.1 listens there too) and \
            at the inbound port's IPv6 address (listen on [::] for both). Run the sidecar with \
            outbound.transparent: true (and inbound.transparent: true with --inbound-ports); see \
            README "Transparent interception".
            """)

    @Flag(name: .long, help: "Install the rules (replacing ours if present).")
    var apply = false

    @Flag(name: .long, help: "Print what --apply would run (the nft script, or the iptables-restore input); change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Remove our rules (a no-op when there are none).")
    var cleanup = false

    @Option(name: .long, help: "The user id the sidecar runs as; its own traffic is never redirected.")
    var proxyUid: UInt32?

    @Option(name: .long, help: "Comma-separated app ports whose inbound connections go to the inbound port.")
    var inboundPorts: String = ""

    @Option(name: .long, help: "Comma-separated IPv4 or IPv6 CIDRs reached directly, never through the sidecar.")
    var excludeOutboundCidrs: String = ""

    @Option(name: .long, help: "Comma-separated destination ports reached directly.")
    var excludeOutboundPorts: String = ""

    @Option(name: .long, help: "The sidecar's outbound port (outbound.listen).")
    var outboundPort: Int = 15001

    @Option(name: .long, help: "The sidecar's inbound port (inbound.listen).")
    var inboundPort: Int = 15006

    @Option(name: .long, help: "The nft program.")
    var nft: String = "nft"

    enum Backend: String, ExpressibleByArgument, CaseIterable {
        case auto, nft, iptables
    }

    @Option(name: .long, help: "nft, iptables, or auto: nft when it is on PATH, else iptables.")
    var backend: Backend = .auto

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
        let useNft: Bool
        switch backend {
        case .nft: useNft = true
        case .iptables: useNft = false
        case .auto: useNft = nft.contains("/") || Self.onPath(nft) || !Self.onPath("iptables")
        }
        guard !cleanup else {
            if useNft { try Self.runNft(nft, script: InterceptionRules.cleanupScript) } else { try Self.iptablesCleanup() }
            return
        }
        let rules: InterceptionRules
        do {
            rules = InterceptionRules(
                proxyUID: proxyUid!, outboundPort: outboundPort, inboundPort: inboundPort,
                inboundPorts: try InterceptionRules.ports(inboundPorts, option: "--inbound-ports"),
                excludeOutboundCIDRs: try InterceptionRules.cidrs(excludeOutboundCidrs, option: "--exclude-outbound-cidrs"),
                excludeOutboundPorts: try InterceptionRules.ports(excludeOutboundPorts, option: "--exclude-outbound-ports"))
        } catch {
            throw ValidationError(error.description)
        }
        if dryRun {
            print(useNft ? rules.applyScript : rules.iptablesApplyText, terminator: "")
            return
        }
        guard useNft else {
            try Self.iptablesCleanup()
            for family in InterceptionRules.Family.allCases {
                let program = InterceptionRules.iptablesProgram(family) + "-restore"
                try Self.require(program, ["-w", "--noflush"], input: rules.iptablesRestoreInput(family))
            }
            return
        }
        try Self.runNft(nft, script: rules.applyScript)
    }

    /// `nft -f -` with the script on stdin; its own error output passes through.
    static func runNft(_ nft: String, script: String) throws {
        try require(nft, ["-f", "-"], input: script)
    }

    /// Removes our iptables jumps and chains, both families; what is not there is skipped.
    static func iptablesCleanup() throws {
        for family in InterceptionRules.Family.allCases {
            for (command, repeats) in InterceptionRules.iptablesCleanup(family) {
                var status = try run(command, input: nil, quiet: true)
                // A jump added twice by hand is deleted twice; 16 is more than anyone adds.
                for _ in 0..<16 where repeats && status == 0 { status = try run(command, input: nil, quiet: true) }
            }
        }
    }

    /// `program arguments…` (found on PATH), failing the command unless it exits 0.
    static func require(_ program: String, _ arguments: [String], input: String) throws {
        let status = try run([program] + arguments, input: input, quiet: false)
        guard status == 0 else {
            FileHandleError.print("sidecar iptables: \(program) \(arguments.joined(separator: " ")) failed with status \(status)"
                                  + (status == 127 ? " (\(program) not found: install Debian's nftables or iptables package)" : ""))
            throw ExitCode(1)
        }
    }

    /// Runs `command` (its program found on PATH) with `input` on stdin; its exit status.
    /// `quiet`: its error output is dropped (a cleanup step with nothing to remove complains).
    static func run(_ command: [String], input: String?, quiet: Bool) throws -> Int32 {
        // posix_spawn, not Foundation's Process: the sidecar links no Foundation.
        var pipeFDs: [Int32] = [-1, -1]
        if input != nil {
            guard pipe(&pipeFDs) == 0 else {
                FileHandleError.print("sidecar iptables: cannot make a pipe: \(String(cString: strerror(errno)))")
                throw ExitCode(1)
            }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input != nil {
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[0], 0)
            posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if quiet { posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) }
        let arguments = ["/usr/bin/env"] + command
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        if input != nil { close(pipeFDs[0]) }
        guard spawned == 0 else {
            if input != nil { close(pipeFDs[1]) }
            FileHandleError.print("sidecar iptables: cannot run \(command[0]): \(String(cString: strerror(spawned)))")
            throw ExitCode(1)
        }
        if let input {
            signal(SIGPIPE, SIG_IGN)  // the program exiting early is an EPIPE here, not the end of this process
            var bytes = Array(input.utf8)[...]
            while !bytes.isEmpty {
                let written = bytes.withUnsafeBytes { write(pipeFDs[1], $0.baseAddress, $0.count) }
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { break }  // it exited early: its status says why
                bytes = bytes.dropFirst(written)
            }
            close(pipeFDs[1])
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // WEXITSTATUS, or 128 + the signal (as a shell reports it).
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f
    }

    /// Whether an executable `name` is in a directory of PATH.
    static func onPath(_ name: String) -> Bool {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
    }
}
