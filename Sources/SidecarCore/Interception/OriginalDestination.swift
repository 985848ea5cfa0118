import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Where a connection redirected by `sidecar iptables` was going before netfilter sent it to
/// the outbound port: `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (IPv6: `SOL_IPV6`,
/// `IP6T_SO_ORIGINAL_DST`) on the accepted socket, read once at accept.
enum OriginalDestination {
    /// `SO_ORIGINAL_DST` and `IP6T_SO_ORIGINAL_DST` (linux/netfilter_ipv4.h, netfilter_ipv6/ip6_tables.h).
    static let optionName: SocketOptionName = 80

    /// The original destination of `channel`'s connection; nil when it was not redirected (no
    /// conntrack entry, or the destination is the listener itself: an app using the outbound
    /// port explicitly) or the socket cannot tell. Completes at once on the channel's loop.
    static func read(from channel: Channel) -> EventLoopFuture<HostPort?> {
        guard let provider = channel as? SocketOptionProvider, let local = channel.localAddress else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let original: EventLoopFuture<HostPort?>
        switch local {
        case .v4:
            original = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_IP), name: optionName).map { (address: sockaddr_in) in
                HostPort(host: IPText.text(UInt32(bigEndian: address.sin_addr.s_addr)), port: Int(UInt16(bigEndian: address.sin_port)))
            }
        case .v6:
            original = provider.unsafeGetSocketOption(level: SocketOptionLevel(IPPROTO_IPV6), name: optionName).map {
                (address: sockaddr_in6) -> HostPort? in
                let host = IPText.ipv6Text(withUnsafeBytes(of: address.sin6_addr) { Array($0) })
                return host.isEmpty ? nil : HostPort(host: host, port: Int(UInt16(bigEndian: address.sin6_port)))
            }
        case .unixDomainSocket:
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        return original.map { destination in
            guard let destination, destination.port != local.port || destination.host != local.ipAddress else { return nil }
            return destination
        }.recover { _ in nil }
    }
}
