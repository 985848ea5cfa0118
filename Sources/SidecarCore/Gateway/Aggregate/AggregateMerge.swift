/// The answer of an aggregate rule from what its calls gave, without I/O: a JSON object with
/// each call's JSON under its key (`null` for a call that failed or came late; the
/// TrafficPolicy's `fallback` body for one the sidecar refused with a fallback, as the proxy
/// would have answered it, when that body is JSON) and `"_errors": { key: cause }` for every
/// call that did not answer; 200 unless every call failed without a fallback value, then 502
/// with the first call's cause from the error taxonomy (`upstream-reset` when it is no taxonomy word).
enum AggregateMerge {
    /// How one call ended.
    enum Outcome: Equatable {
        /// A 2xx answer whose body is one JSON value (kept as received).
        case json([UInt8])
        /// Why there is no value: a taxonomy cause (`timeout`, `connect-failed`,
        /// `no-healthy-endpoint`, or the `x-mesh-error` a sidecar answered with), `status-<code>`
        /// for another non-2xx answer, `invalid-json`, `too-large`.
        case failed(String)
        /// Refused by this sidecar with `cause` (`circuit-open`, `no-healthy-endpoint`), and the
        /// service's TrafficPolicy `fallback` body (one JSON value) stands in for the answer.
        case fallback([UInt8], cause: String)
    }

    /// The largest body a call may bring (more fails it with `too-large`).
    static let maxCallBodyBytes = 1 << 20

    /// The outcome of a complete answer with `status`, `meshError` (its `x-mesh-error`) and `body`.
    static func outcome(status: Int, meshError: String?, body: [UInt8]) -> Outcome {
        guard (200..<300).contains(status) else { return .failed(meshError ?? "status-\(status)") }
        return JSONValue.parse(body) == nil ? .failed("invalid-json") : .json(body)
    }

    /// The outcome of a call the sidecar refused with `error` before an answer came: the
    /// error's `fallback` body when it carries one that is JSON, else its cause.
    static func outcome(_ error: ProxyError) -> Outcome {
        let cause = error.cause.rawValue
        guard let body = error.fallback.map({ Array($0.body.utf8) }), JSONValue.parse(body) != nil else { return .failed(cause) }
        return .fallback(body, cause: cause)
    }

    /// The body (200), or the error (502) when every call failed (none with a fallback value);
    /// a key with no outcome came too late (`timeout`).
    static func answer(keys: [String], outcomes: [String: Outcome]) -> Result<String, ProxyError> {
        var body = "{"
        var errors: [(String, String)] = []
        var answered = 0
        for (index, key) in keys.enumerated() {
            if index > 0 { body += "," }
            body += "\"\(key)\":"
            switch outcomes[key] ?? .failed("timeout") {
            case .json(let bytes):
                body += String(decoding: bytes, as: UTF8.self)
                answered += 1
            case .fallback(let bytes, let cause):
                body += String(decoding: bytes, as: UTF8.self)
                answered += 1
                errors.append((key, cause))
            case .failed(let cause):
                body += "null"
                errors.append((key, cause))
            }
        }
        if answered == 0, let first = errors.first {
            let detail = errors.map { "\($0.0): \($0.1)" }.joined(separator: "; ")
            return .failure(ProxyError(ProxyError.Cause(rawValue: first.1) ?? .upstreamReset, "every aggregate call failed (\(detail))", status: 502))
        }
        if !errors.isEmpty {
            body += ",\"_errors\":{" + errors.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",") + "}"
        }
        return .success(body + "}")
    }
}
