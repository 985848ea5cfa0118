import NIOCore
import NIOHTTP1

/// Maps an admin request (method and target) to its response: the whole routing table of
/// port 15000, without I/O, so it is tested in memory and the handler only writes the result.
///
/// Only `GET` is served (405 with `Allow: GET` otherwise, for known paths and unknown alike);
/// the query string is ignored but by `/explain`; an unknown path is 404. `/ready` answers JSON
/// `{"status": "ready", "source": "live"}` (200, or 503 when not ready or draining).
public struct AdminRouter: Sendable {
    public let providers: AdminProviders

    public init(providers: AdminProviders) {
        self.providers = providers
    }

    public func respond(method: HTTPMethod, uri: String, allocator: ByteBufferAllocator) -> AdminResponse {
        guard method == .GET else {
            return AdminResponse(
                status: .methodNotAllowed, contentType: "text/plain; charset=utf-8",
                body: ByteBuffer(string: "method not allowed\n"), headers: [("Allow", "GET")])
        }
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        switch path {
        case "/metrics":
            return AdminResponse(
                status: .ok, contentType: PrometheusTextWriter.contentType,
                body: providers.metrics.exposition(allocator: allocator))
        case "/ready":
            // JSON, so a probe reads the status code and an operator also sees where the
            // configuration came from (`last-known-good` while a restarted sidecar has no control plane).
            let source = providers.source().rawValue
            switch providers.readiness() {
            case .ready: return .json(.ok, #"{"status":"ready","source":"\#(source)"}"# + "\n")
            case .notReady: return .json(.serviceUnavailable, #"{"status":"not ready","source":"\#(source)"}"# + "\n")
            case .draining: return .json(.serviceUnavailable, #"{"status":"draining","source":"\#(source)"}"# + "\n")
            }
        case "/live":
            return .text(.ok, "live")
        case "/config":
            return .json(providers.config())
        case "/clusters":
            return .json(providers.clusters())
        case "/explain":
            let (ok, document) = providers.explain(uri)
            return .json(ok ? .ok : .badRequest, document)
        default:
            return .text(.notFound, "not found")
        }
    }
}
