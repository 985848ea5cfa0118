import Foundation

/// Hosts made of Linux network namespaces for the interception tests: one namespace per host,
/// each with `lo` up and an `eth0` (veth) on one bridge, which lives in a namespace of its own,
/// so nothing is added to the machine's own network. Names are unique per instance
/// (`mtest-<hex>-<host>`); `remove()` deletes them all (and with them every veth), and is
/// safe to call twice. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2.
public final class NetworkNamespaces: @unchecked Sendable {
    /// Why namespace tests cannot run here, or nil when they can: checked once by making and
    /// deleting a namespace and looking for `nft` and `setpriv`.
    public static let unavailable: String? = {
        let probe = "mtest-probe-\(getpid())"
        guard runNow(["ip", "netns", "add", probe]) == 0 else {
            return "`ip netns add` is not permitted here (needs root and iproute2): interception tests skipped"
        }
        _ = runNow(["ip", "netns", "delete", probe])
        guard runNow(["nft", "--version"]) == 0 else {
            return "nft not found (Debian package nftables; scripts/install-deps.sh installs it): interception tests skipped"
        }
        guard runNow(["setpriv", "--version"]) == 0 else { return "setpriv (util-linux) not found: interception tests skipped" }
        return nil
    }()

    public let prefix: String
    /// host name → namespace name.
    public private(set) var namespaces: [String: String] = [:]
    private var bridge: String?

    public init() {
        prefix = "mtest-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }

    deinit { remove() }

    /// Adds host `name` with `address` (CIDR, e.g. 10.77.0.2/24) on the shared bridge, and
    /// `ipv6` (e.g. fd77::2/64) if given, usable at once (no duplicate address detection).
    public func addHost(_ name: String, address: String, ipv6: String? = nil) async throws {
        let bridge = try await bridgeNamespace()
        let namespace = "\(prefix)-\(name)"
        namespaces[name] = namespace
        try await Self.run(["ip", "netns", "add", namespace])
        try await Self.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        try await Self.run(["ip", "link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", "p-\(name)", "netns", bridge])
        try await Self.run(["ip", "-n", namespace, "addr", "add", address, "dev", "eth0"])
        if let ipv6 { try await Self.run(["ip", "-n", namespace, "addr", "add", ipv6, "dev", "eth0", "nodad"]) }
        try await Self.run(["ip", "-n", namespace, "link", "set", "eth0", "up"])
        try await Self.run(["ip", "-n", bridge, "link", "set", "dev", "p-\(name)", "master", "br0"])
        try await Self.run(["ip", "-n", bridge, "link", "set", "dev", "p-\(name)", "up"])
    }

    /// `ip netns exec <host's namespace>` followed by the command.
    public func exec(_ host: String, _ command: [String]) -> [String] {
        ["ip", "netns", "exec", namespaces[host]!] + command
    }

    /// Runs `command` in `host` to completion.
    public func run(
        _ host: String, _ command: [String], input: String? = nil, timeout: Duration = .seconds(30)
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await ChildProcess.run(exec(host, command), input: input, timeout: timeout)
    }

    /// Deletes every namespace made here (processes still inside keep theirs alive until they
    /// exit, so stop them first).
    public func remove() {
        for namespace in namespaces.values { _ = Self.runNow(["ip", "netns", "delete", namespace]) }
        namespaces = [:]
        if let bridge { _ = Self.runNow(["ip", "netns", "delete", bridge]) }
        bridge = nil
    }

    private func bridgeNamespace() async throws -> String {
        if let bridge { return bridge }
        let name = "\(prefix)-sw"
        bridge = name
        try await Self.run(["ip", "netns", "add", name])
        try await Self.run(["ip", "-n", name, "link", "add", "br0", "type", "bridge"])
        try await Self.run(["ip", "-n", name, "link", "set", "br0", "up"])
        return name
    }

    private static func run(_ command: [String]) async throws {
        let result = try await ChildProcess.run(command)
        guard result.status == 0 else {
            throw NamespaceError(description: "\(command.joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
        }
    }

    /// Synchronous, for the availability check and cleanup in `deinit`.
    @discardableResult
    private static func runNow(_ command: [String]) -> Int32 {
        guard let process = try? SpawnedProcess(
            arguments: command, environment: nil, stdoutPath: "/dev/null", stderrPath: "/dev/null", stdinFD: open("/dev/null", O_RDONLY))
        else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    public struct NamespaceError: Error, CustomStringConvertible {
        public let description: String
    }
}
