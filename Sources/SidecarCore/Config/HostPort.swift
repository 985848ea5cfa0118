/// A socket address as written in config: `127.0.0.1:15001`, `[::1]:15001` or
/// `localhost:8080`. Port 0 is allowed (the OS picks one; tests rely on it).
///
/// Parsing validates IPv4 dotted quads, bracketed IPv6 literals and DNS host names;
/// `description` is the canonical text form and parses back to the same value.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// The host without brackets: `127.0.0.1`, `::1`, `localhost`.
    public let host: String
    public let port: Int
    /// The hash, computed once: an endpoint is a dictionary key several times per request
    /// (pool, outstanding tries, ejections), and hashing its host each time showed in profiles.
    private let hash: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
        var hasher = Hasher()
        hasher.combine(host)
        hasher.combine(port)
        self.hash = hasher.finalize()
    }

    public static func == (lhs: HostPort, rhs: HostPort) -> Bool {
        lhs.port == rhs.port && lhs.host == rhs.host
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(hash) }

    public var description: String {
        isIPv6Literal ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Whether `host` is an IPv6 literal (written in brackets). Byte-level: this runs per
    /// request for the access log's `upstream`.
    var isIPv6Literal: Bool {
        // over the contiguous bytes: the generic `contains` walked the UTF-8 view at ~35
        // instructions a byte, once per access log line
        host.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.contains(UInt8(ascii: ":"))
        } ?? host.utf8.contains(UInt8(ascii: ":"))
    }

    /// Parses `host:port`; on failure returns the reason, phrased to follow the quoted input.
    public static func parse(_ text: String) -> Result<HostPort, HostPortError> {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.init("has no closing \"]\"")) }
            host = text[text.index(after: text.startIndex)..<close]
            let afterClose = text[text.index(after: close)...]
            guard afterClose.hasPrefix(":") else { return .failure(.init("needs a port after \"]\", as in [::1]:15001")) }
            portText = afterClose.dropFirst()
            guard isIPv6(host) else { return .failure(.init("has an invalid IPv6 address \"\(host)\"")) }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return .failure(.init("needs a port, as in 127.0.0.1:8080"))
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                return .failure(.init("needs brackets around an IPv6 address, as in [::1]:8080"))
            }
            guard isIPv4(host) || isHostName(host) else {
                return .failure(.init("has an invalid host \"\(host)\""))
            }
        }
        guard (1...5).contains(portText.count), portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = Int(portText)
        else {
            return .failure(.init("has an invalid port \"\(portText)\""))
        }
        guard (0...65535).contains(port) else {
            return .failure(.init("has port \(port) out of range 0..65535"))
        }
        return .success(HostPort(host: String(host), port: port))
    }

    /// True for an IP literal or DNS name usable as an Instance address (no brackets, no port).
    /// `0.0.0.0` or `::`: a listen address meaning "every interface", never one to dial.
    static func isUnspecified(_ host: String) -> Bool {
        host == "0.0.0.0" || host == "::" || host == "[::]"
    }

    /// The host itself when it is a loopback address or `localhost` (nil otherwise).
    static func loopbackHost(_ host: String) -> String? {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") ? host : nil
    }

    static func isValidHost(_ text: some StringProtocol) -> Bool {
        isIPv4(text) || isIPv6(text) || isHostName(text)
    }

    static func isIPv4(_ text: some StringProtocol) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy { $0.isASCII && $0.isNumber }
                && (Int(part) ?? 256) <= 255
        }
    }

    static func isIPv6(_ text: some StringProtocol) -> Bool {
        guard text.contains(":"), text.count <= 45 else { return false }
        let halves = text.split(separator: "::", omittingEmptySubsequences: false)
        guard halves.count <= 2 else { return false }
        var groups = 0
        for (index, half) in halves.enumerated() where !half.isEmpty {
            let parts = half.split(separator: ":", omittingEmptySubsequences: false)
            for (partIndex, part) in parts.enumerated() {
                let isLast = index == halves.count - 1 && partIndex == parts.count - 1
                if isLast && part.contains(".") {
                    guard isIPv4(part) else { return false }
                    groups += 2
                } else {
                    guard (1...4).contains(part.count), part.allSatisfy(\.isHexDigit) else { return false }
                    groups += 1
                }
            }
        }
        return halves.count == 2 ? groups <= 7 : groups == 8
    }

    static func isHostName(_ text: some StringProtocol) -> Bool {
        guard !text.isEmpty, text.count <= 253 else { return false }
        // A name whose last label is all digits is a mistyped IPv4 address, not a host.
        if let last = text.split(separator: ".").last, last.allSatisfy(\.isNumber) { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }
}

/// Why a `HostPort` did not parse; `reason` reads after the quoted input: `"x:99999" has port …`.
public struct HostPortError: Error, Sendable, Equatable {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
}
