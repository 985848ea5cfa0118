import NIOCore

/// gRPC's status codes (grpc/doc/statuscodes.md), as `grpc-status` carries them.
enum GRPCStatusCode: Int, Sendable, CaseIterable {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// The `grpc-status` value as received: 0–16; anything else is not a status we can count.
    init?(headerValue: String) {
        guard (1...2).contains(headerValue.utf8.count), let code = Int(headerValue) else { return nil }
        self.init(rawValue: code)
    }

    /// The `grpc_status` label of `sidecar_grpc_responses_total` and the access log field.
    var label: String { Self.labels[rawValue] }
    private static let labels = GRPCStatusCode.allCases.map { String($0.rawValue) }

    /// The status a sidecar-made error becomes for a gRPC caller (DESIGN.md "Errors the sidecar makes").
    init(_ cause: ProxyError.Cause) {
        switch cause {
        case .noRoute: self = .unimplemented
        case .noHealthyEndpoint, .connectFailed, .tlsFailed, .upstreamReset, .circuitOpen: self = .unavailable
        case .timeout: self = .deadlineExceeded
        case .rateLimited: self = .resourceExhausted
        case .forbidden: self = .permissionDenied
        case .unauthenticated: self = .unauthenticated
        case .badRequest, .headersTooLarge, .loopDetected: self = .invalidArgument
        case .faultInjected: self = .unavailable  // a rule's `abort.grpcStatus` overrides this
        case .notCached: self = .unavailable
        }
    }
}

/// gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md): what the sidecar reads and writes of it.
enum GRPC {
    /// A request is a gRPC call when its `content-type` is `application/grpc` or `application/grpc+…`/`;…`.
    static func isGRPC(contentType: String?) -> Bool {
        guard let contentType else { return false }
        let utf8 = contentType.utf8
        let prefix = "application/grpc".utf8
        guard utf8.count >= prefix.count,
            utf8.prefix(prefix.count).elementsEqual(prefix, by: { HTTPGrammar.lowercased($0) == $1 })
        else { return false }
        guard utf8.count > prefix.count else { return true }
        let next = utf8[utf8.index(utf8.startIndex, offsetBy: prefix.count)]
        return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
    }

    /// `grpc-timeout`: 1–8 ASCII digits and a unit (H, M, S, m, u, n); nil when malformed
    /// (the call then has only the route's timeout, as gRPC servers ignore a bad value).
    static func timeout(_ value: String) -> TimeAmount? {
        let utf8 = Array(value.utf8)
        guard (2...9).contains(utf8.count), let unit = utf8.last else { return nil }
        var amount: Int64 = 0
        for digit in utf8.dropLast() {
            guard digit >= 0x30, digit <= 0x39 else { return nil }
            amount = amount * 10 + Int64(digit - 0x30)
        }
        switch unit {
        case UInt8(ascii: "H"): return .hours(amount)
        case UInt8(ascii: "M"): return .minutes(amount)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    /// `grpc-message` is percent-encoded: bytes outside printable ASCII and `%` itself.
    static func percentEncoded(_ message: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(message.utf8.count)
        for byte in message.utf8 {
            if byte >= 0x20, byte <= 0x7e, byte != UInt8(ascii: "%") {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), HTTPGrammar.hexDigit(byte >> 4, uppercase: true), HTTPGrammar.hexDigit(byte & 0x0f, uppercase: true)]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
