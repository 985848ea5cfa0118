import Foundation
import NIOCore
import SidecarCore

/// One API request as the router sees it: already framed and size-checked by the server.
public struct APIRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var headers: [(String, String)]
    public var body: String
    /// The verified client certificate's SPIFFE ID, when the client presented one.
    public var peerIdentity: SPIFFEID?

    public init(method: String, uri: String, headers: [(String, String)], body: String, peerIdentity: SPIFFEID?) {
        self.method = method
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        self.path = String(parts.first ?? "")
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
                let value = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
                query[key] = value
            }
        }
        self.query = query
        self.headers = headers
        self.body = body
        self.peerIdentity = peerIdentity
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var bearerToken: String? {
        guard let value = header("authorization") else { return nil }
        let prefix = "bearer "
        guard value.lowercased().hasPrefix(prefix) else { return nil }
        return String(value.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
    }
}

public struct APIResponse: Sendable {
    public var status: Int
    public var contentType: String
    /// The body as sent. A snapshot's bytes are shared by all the responses that carry it.
    public var bytes: ByteBuffer

    public var body: String { String(buffer: bytes) }

    public init(status: Int, contentType: String = "application/json", body: String) {
        self.init(status: status, contentType: contentType, bytes: ByteBuffer(string: body))
    }

    public init(status: Int, contentType: String = "application/json", bytes: ByteBuffer) {
        self.status = status
        self.contentType = contentType
        self.bytes = bytes
    }

    public init(_ error: APIError) {
        self.init(status: error.status, body: error.json)
    }

    static func json<T: Encodable>(_ value: T, status: Int = 200) -> APIResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return APIResponse(status: status, body: String(decoding: data, as: UTF8.self) + "\n")
    }
}

/// Maps method + path to the `MeshControlPlane` operation, checking who may call it, and
/// counts every request under its route template. Immutable; safe to share.
///
/// | route | who | body -> answer |
/// | --- | --- | --- |
/// | `GET /metrics` | anyone | Prometheus text |
/// | `POST /v1/apply` | admin | YAML stream or JSON (object/array) -> `{"applied":[{kind,name,resourceVersion}]}`; 400 syntax, 422 invalid, 409 stale |
/// | `GET /v1/resources[/{kind}[/{name}]]` | admin | JSON array / object with `resourceVersion` |
/// | `DELETE /v1/resources/{kind}/{name}` | admin | `{"deleted":true}`, 404 |
/// | `POST /v1/tokens` | admin | `{"service","ttl"?}` -> 201 `{"token","service","expiresAt"?}` |
/// | `GET /v1/proxies` | admin | `[ProxyStatus]` |
/// | `GET /v1/ca/bundle` | any principal | PEM |
/// | `POST /v1/certificates` | sidecar (join token or mTLS) | `{"csr"}` -> 201 `{"certificate","bundle","identity","expiresAt"}`; 403 another service's ID |
/// | `POST /v1/register` | sidecar | `{"service","address","port","labels"?,"dependencies"?}` -> 201 `{"name","version","ttlSeconds"}` |
/// | `POST /v1/heartbeat` | sidecar | `{"name","version"?}` (version = snapshot applied); 404 -> register again |
/// | `POST /v1/deregister` | sidecar | `{"name"}` |
/// | `GET /v1/snapshot/{service}?version=N&instance=NAME` | that service's sidecar | 200 `MeshSnapshot` JSON at once if N is not current, else on the next change; 304 after the watch timeout |
///
/// Every error is `{"error": "..."}` (plus `issues` for validation) with the status from `APIError`.
public struct APIRouter: Sendable {
    public let controlPlane: MeshControlPlane
    public var watchTimeout: Duration

    public init(controlPlane: MeshControlPlane, watchTimeout: Duration = .seconds(30)) {
        self.controlPlane = controlPlane
        self.watchTimeout = watchTimeout
    }

    public func handle(_ request: APIRequest) async -> APIResponse {
        let segments = request.path.split(separator: "/").map(String.init)
        let (route, response): (String, APIResponse)
        do {
            (route, response) = try await dispatch(request, segments: segments)
        } catch {
            response = APIResponse(error.error)
            route = error.route
        }
        controlPlane.metrics.countRequest(route: route, code: response.status)
        return response
    }

    /// An error with the route template it happened under.
    struct RoutedError: Error {
        var route: String
        var error: APIError
    }

    private func dispatch(_ request: APIRequest, segments: [String]) async throws(RoutedError) -> (String, APIResponse) {
        let method = request.method
        var captures: [String] = []
        /// Matches a template such as `v1/resources/{kind}`, capturing its `{}` segments.
        func matches(_ wantedMethod: String, _ template: String) -> Bool {
            let parts = template.split(separator: "/").map(String.init)
            guard method == wantedMethod, parts.count == segments.count else { return false }
            var found: [String] = []
            for (part, segment) in zip(parts, segments) {
                if part.hasPrefix("{") { found.append(segment) } else if part != segment { return false }
            }
            captures = found
            return true
        }
        switch true {
        case matches("GET", "metrics"):
            return ("/metrics", APIResponse(status: 200, contentType: "text/plain; version=0.0.4", body: await controlPlane.metricsText()))
        case matches("POST", "v1/apply"):
            return try await routed("/v1/apply", request, admin: true) { _ in
                let json = request.header("content-type")?.contains("json") == true
                    || request.body.drop { $0.isWhitespace }.first.map { $0 == "{" || $0 == "[" } == true
                let stored = try await controlPlane.apply(body: request.body, json: json)
                return .json(APIMessages.ApplyResponse(applied: stored.map {
                    APIMessages.AppliedResource(kind: $0.kind.rawValue, name: $0.name, resourceVersion: $0.resourceVersion ?? "")
                }))
            }
        case matches("GET", "v1/resources"):
            return try await routed("/v1/resources", request, admin: true) { _ in
                APIResponse(status: 200, body: MeshResource.json(try await controlPlane.list(kind: nil)) + "\n")
            }
        case matches("GET", "v1/resources/{kindWord}"):
            let kindWord = captures[0]
            return try await routed("/v1/resources/{kind}", request, admin: true) { _ in
                let kind = try Self.kind(kindWord)
                return APIResponse(status: 200, body: MeshResource.json(try await controlPlane.list(kind: kind)) + "\n")
            }
        case matches("GET", "v1/resources/{kindWord}/{name}"):
            let kindWord = captures[0]
            let name = captures[1]
            return try await routed("/v1/resources/{kind}/{name}", request, admin: true) { _ in
                let resource = try await controlPlane.get(kind: try Self.kind(kindWord), name: name)
                return APIResponse(status: 200, body: resource.json + "\n")
            }
        case matches("DELETE", "v1/resources/{kindWord}/{name}"):
            let kindWord = captures[0]
            let name = captures[1]
            return try await routed("/v1/resources/{kind}/{name}", request, admin: true) { _ in
                try await controlPlane.delete(kind: try Self.kind(kindWord), name: name)
                return APIResponse(status: 200, body: "{\"deleted\":true}\n")
            }
        case matches("POST", "v1/tokens"):
            return try await routed("/v1/tokens", request, admin: true) { _ in
                let body = try Self.decode(APIMessages.TokenRequest.self, request.body)
                var ttl: MeshDuration?
                if let text = body.ttl {
                    guard let parsed = MeshDuration(parsing: text) else {
                        throw APIError.badRequest("ttl \"\(text)\" is not a duration (use 30m, 1h, 24h)")
                    }
                    ttl = parsed
                }
                return .json(try await controlPlane.createJoinToken(service: body.service, ttl: ttl), status: 201)
            }
        case matches("GET", "v1/ca/bundle"):
            return try await routed("/v1/ca/bundle", request, admin: false) { _ in
                APIResponse(status: 200, contentType: "application/x-pem-file", body: controlPlane.authority.rootPEM)
            }
        case matches("POST", "v1/certificates"):
            return try await routed("/v1/certificates", request, admin: false) { principal in
                let body = try Self.decode(APIMessages.CertificateRequest.self, request.body)
                return .json(try await controlPlane.issueCertificate(csrPEM: body.csr, principal: principal), status: 201)
            }
        case matches("POST", "v1/register"):
            return try await routed("/v1/register", request, admin: false) { principal in
                let body = try Self.decode(APIMessages.RegisterRequest.self, request.body)
                return .json(try await controlPlane.register(body, principal: principal), status: 201)
            }
        case matches("POST", "v1/heartbeat"):
            return try await routed("/v1/heartbeat", request, admin: false) { principal in
                let body = try Self.decode(APIMessages.HeartbeatRequest.self, request.body)
                try await controlPlane.heartbeat(body, principal: principal)
                return APIResponse(status: 200, body: "{\"ok\":true}\n")
            }
        case matches("POST", "v1/deregister"):
            return try await routed("/v1/deregister", request, admin: false) { principal in
                let body = try Self.decode(APIMessages.DeregisterRequest.self, request.body)
                try await controlPlane.deregister(body, principal: principal)
                return APIResponse(status: 200, body: "{\"ok\":true}\n")
            }
        case matches("GET", "v1/snapshot/{service}"):
            let service = captures[0]
            return try await routed("/v1/snapshot/{service}", request, admin: false) { principal in
                var known: Int64?
                if let text = request.query["version"], !text.isEmpty {
                    guard let value = Int64(text) else { throw APIError.badRequest("version \"\(text)\" is not an integer") }
                    known = value
                }
                let snapshot = try await controlPlane.watch(
                    service: service, knownVersion: known, instance: request.query["instance"], principal: principal,
                    timeout: watchTimeout)
                guard let snapshot else { return APIResponse(status: 304, body: "") }
                return APIResponse(status: 200, bytes: snapshot.body)
            }
        case matches("GET", "v1/proxies"):
            return try await routed("/v1/proxies", request, admin: true) { _ in
                .json(try await controlPlane.proxies())
            }
        default:
            let known = ["metrics", "v1"].contains(segments.first ?? "")
            throw RoutedError(
                route: "unmatched",
                error: known ? APIError(405, "no route \(method) \(request.path)") : .notFound("no route \(method) \(request.path)"))
        }
    }

    /// Authenticates, runs `body`, and tags errors with `route`.
    private func routed(
        _ route: String, _ request: APIRequest, admin: Bool,
        _ body: (MeshControlPlane.Principal) async throws -> APIResponse
    ) async throws(RoutedError) -> (String, APIResponse) {
        do {
            let principal = try await controlPlane.authenticate(bearer: request.bearerToken, peer: request.peerIdentity)
            if admin, principal != .admin { throw APIError.forbidden("this route needs the admin token") }
            return (route, try await body(principal))
        } catch let error as APIError {
            throw RoutedError(route: route, error: error)
        } catch {
            throw RoutedError(route: route, error: APIError(500, "internal error: \(error)"))
        }
    }

    private static func kind(_ word: String) throws(APIError) -> ResourceKind {
        guard let kind = ResourceKind(word: word) else {
            let known = ResourceKind.allCases.map(\.rawValue).joined(separator: ", ")
            throw .notFound("unknown kind \"\(word)\" (known: \(known))")
        }
        return kind
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ body: String) throws(APIError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(body.utf8))
        } catch DecodingError.keyNotFound(let key, _) {
            throw .init(422, "missing field \"\(key.stringValue)\"")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw .init(422, "field \"\(path)\": \(context.debugDescription)")
        } catch {
            throw .badRequest("the body is not valid JSON")
        }
    }
}
