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
                HostPort(host: IPv4Text.text(UInt32(bigEndian: address.sin_addr.s_addr)), port: Int(UInt16(bigEndian: address.sin_port)))
            }
        case .v6:
            original = provider.unsafeGetSocketOption(level: SocketOptionLevel(IPPROTO_IPV6), name: optionName).map {
                (address: sockaddr_in6) -> HostPort? in
                var copy = address.sin6_addr
                var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                guard inet_ntop(AF_INET6, &copy, &text, socklen_t(text.count)) != nil else { return nil }
                let host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                return HostPort(host: host, port: Int(UInt16(bigEndian: address.sin6_port)))
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
