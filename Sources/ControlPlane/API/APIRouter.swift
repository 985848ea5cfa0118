import Foundation
import MeshAPI
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
    /// More response headers (the dashboard's `set-cookie`, `location`, security headers).
    public var headers: [(String, String)] = []

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
/// Two steps, so the server never reads a body it would refuse: `admit` decides from the
/// request head alone (route, credentials: bearer token or client certificate, admin-only
/// routes) and `respond` runs the admitted operation once the body is in. `handle` does both.
///
/// | route | who | body -> answer |
/// | --- | --- | --- |
/// | `GET /metrics` | anyone | Prometheus text |
/// | `POST /v1/apply` | admin | YAML stream or JSON (object/array) -> `{"applied":[{kind,name,resourceVersion}]}`; 400 syntax, 422 invalid, 409 stale |
/// | `GET /v1/resources[/{kind}[/{name}]]` | admin | JSON array / object with `resourceVersion` |
/// | `DELETE /v1/resources/{kind}/{name}` | admin | `{"deleted":true}`, 404 |
/// | `POST /v1/tokens` | admin | `{"service","ttl"?,"uses"?}` -> 201 `{"token","id","service","expiresAt","usesLeft"?}`; 400 bad service name, ttl or uses |
/// | `GET /v1/tokens` | admin | `[{"id","service","expires","usesLeft","state"}]` (never a secret) |
/// | `DELETE /v1/tokens/{id}` | admin | the revoked token's row; 404 |
/// | `GET /v1/proxies` | admin | `[ProxyStatus]` |
/// | `GET /v1/ca/bundle` | any principal | PEM |
/// | `POST /v1/certificates` | sidecar (join token or mTLS) | `{"csr"}` -> 201 `{"certificate","bundle","identity","expiresAt"}`; 403 another service's ID; takes one use of a join token |
/// | `POST /v1/register` | sidecar | `{"service","address","port","labels"?,"dependencies"?}` -> 201 `{"name","version","ttlSeconds"}` |
/// | `POST /v1/heartbeat` | sidecar | `{"name","version"?,"rejectedVersion"?,"rejectedReason"?}` (version = snapshot applied; rejected = the newest it refused); 404 -> register again |
/// | `POST /v1/deregister` | sidecar | `{"name"}` |
/// | `GET /v1/snapshot/{service}?version=N&instance=NAME&rejected=R` | that service's sidecar | 200 `MeshSnapshot` JSON at once if max(N, R) is not current, else on the next change; 304 after the watch timeout |
/// | `GET, POST /ui/…` | a dashboard session (cookie), `Dashboard` decides | HTML pages, sign-in/out, `/ui/events` long poll; no session: 303 to `/ui/login` (pages) or 401 (data) |
///
/// An expired, revoked or used-up join token gets 401 saying which. Every error is
/// `{"error": "..."}` (plus `issues` for validation) with the status from `APIError`: the
/// router's own refusals (route, body shape) and `MeshControlPlane`'s `ControlPlaneError`s,
/// mapped here and nowhere else.
public struct APIRouter: Sendable {
    public let controlPlane: MeshControlPlane
    public var watchTimeout: Duration
    /// Everything under `/ui`: its own session rules (see `Dashboard`), not the bearer token's.
    public let dashboard: Dashboard

    public init(controlPlane: MeshControlPlane, watchTimeout: Duration = .seconds(30), dashboard: Dashboard? = nil) {
        self.controlPlane = controlPlane
        self.watchTimeout = watchTimeout
        self.dashboard = dashboard ?? Dashboard(controlPlane: controlPlane)
    }

    /// A matched route: the operation, its captured path segments, its metrics label and who
    /// may call it.
    public struct Route: Sendable {
        enum Operation: Sendable {
            case metrics, apply, listAll, listKind, getResource, deleteResource
            case createToken, listTokens, revokeToken
            case caBundle, certificates, register, heartbeat, deregister, snapshot, proxies
            case dashboard
        }

        public enum Access: Sendable, Equatable {
            /// No credentials needed (`/metrics`).
            case anyone
            case admin
            /// The admin or a sidecar (join token or client certificate).
            case anyPrincipal
        }

        let operation: Operation
        let captures: [String]
        /// The route template, the `route` label of `control_plane_api_requests_total`.
        public let template: String
        public let access: Access
    }

    /// What the head of a request decides.
    public enum Admission: Sendable {
        /// Read the body, then `respond`. The principal is nil on routes open to anyone.
        case accepted(Route, MeshControlPlane.Principal?)
        /// Answer this (already counted) and read no body.
        case refused(APIResponse)
    }

    /// Matches the route and authenticates the caller from the head alone (`request.body` is
    /// not looked at). Synchronous, but a join token costs one indexed SQLite read: the server
    /// calls it off the event loop.
    public func admit(_ request: APIRequest) -> Admission {
        if Dashboard.serves(path: request.path) {
            switch dashboard.admit(request) {
            case .accepted(let template):
                return .accepted(Route(operation: .dashboard, captures: [], template: template, access: .anyone), nil)
            case .refused(let template, let response):
                controlPlane.metrics.countRequest(route: template, code: response.status)
                return .refused(response)
            }
        }
        guard let route = Self.route(method: request.method, path: request.path) else {
            let known = ["metrics", "v1"].contains(request.path.split(separator: "/").first.map(String.init) ?? "")
            let message = "no route \(request.method) \(request.path)"
            return refused(route: "unmatched", known ? APIError(405, message) : .notFound(message))
        }
        guard route.access != .anyone else { return .accepted(route, nil) }
        let principal: MeshControlPlane.Principal
        do {
            principal = try controlPlane.authenticate(bearer: request.bearerToken, peer: request.peerIdentity)
        } catch {
            return refused(route: route.template, APIError(error))
        }
        if route.access == .admin, principal != .admin {
            return refused(route: route.template, .forbidden("this route needs the admin token"))
        }
        return .accepted(route, principal)
    }

    /// Runs an admitted request's operation and counts it under the route's template.
    public func respond(to request: APIRequest, route: Route, principal: MeshControlPlane.Principal?) async -> APIResponse {
        let response: APIResponse
        do {
            response = try await run(route, request, principal: principal)
        } catch let error as APIError {
            response = APIResponse(error)
        } catch let error as ControlPlaneError {
            response = APIResponse(APIError(error))
        } catch {
            response = APIResponse(APIError(500, "internal error: \(error)"))
        }
        controlPlane.metrics.countRequest(route: route.template, code: response.status)
        return response
    }

    /// `admit`, then `respond`: a whole request in memory (tests, and the same path the server takes).
    public func handle(_ request: APIRequest) async -> APIResponse {
        switch admit(request) {
        case .refused(let response): return response
        case .accepted(let route, let principal): return await respond(to: request, route: route, principal: principal)
        }
    }

    /// A refusal the server makes before the router sees a body (413, 408, 503), counted
    /// like every other answer.
    public func refusal(route: String, _ error: APIError) -> APIResponse {
        controlPlane.metrics.countRequest(route: route, code: error.status)
        return APIResponse(error)
    }

    private func refused(route: String, _ error: APIError) -> Admission {
        .refused(refusal(route: route, error))
    }

    private static let table: [(method: String, template: String, operation: Route.Operation, access: Route.Access)] = [
        ("GET", "/metrics", .metrics, .anyone),
        ("POST", "/v1/apply", .apply, .admin),
        ("GET", "/v1/resources", .listAll, .admin),
        ("GET", "/v1/resources/{kind}", .listKind, .admin),
        ("GET", "/v1/resources/{kind}/{name}", .getResource, .admin),
        ("DELETE", "/v1/resources/{kind}/{name}", .deleteResource, .admin),
        ("POST", "/v1/tokens", .createToken, .admin),
        ("GET", "/v1/tokens", .listTokens, .admin),
        ("DELETE", "/v1/tokens/{id}", .revokeToken, .admin),
        ("GET", "/v1/ca/bundle", .caBundle, .anyPrincipal),
        ("POST", "/v1/certificates", .certificates, .anyPrincipal),
        ("POST", "/v1/register", .register, .anyPrincipal),
        ("POST", "/v1/heartbeat", .heartbeat, .anyPrincipal),
        ("POST", "/v1/deregister", .deregister, .anyPrincipal),
        ("GET", "/v1/snapshot/{service}", .snapshot, .anyPrincipal),
        ("GET", "/v1/proxies", .proxies, .admin),
    ]

    /// The route for a method and path, capturing its `{}` segments; nil when none matches.
    static func route(method: String, path: String) -> Route? {
        let segments = path.split(separator: "/")
        for entry in table where entry.method == method {
            let parts = entry.template.split(separator: "/")
            guard parts.count == segments.count else { continue }
            var captures: [String] = []
            var matched = true
            for (part, segment) in zip(parts, segments) {
                if part.hasPrefix("{") {
                    captures.append(String(segment))
                } else if part != segment {
                    matched = false
                    break
                }
            }
            if matched {
                return Route(operation: entry.operation, captures: captures, template: entry.template, access: entry.access)
            }
        }
        return nil
    }

    private func run(_ route: Route, _ request: APIRequest, principal: MeshControlPlane.Principal?) async throws -> APIResponse {
        /// Routes other than `/metrics` were admitted with a principal.
        func caller() throws(APIError) -> MeshControlPlane.Principal {
            guard let principal else { throw .unauthorized() }
            return principal
        }
        let captures = route.captures
        switch route.operation {
        case .metrics:
            return APIResponse(status: 200, contentType: "text/plain; version=0.0.4", body: await controlPlane.metricsText())
        case .apply:
            let json = request.header("content-type")?.contains("json") == true
                || request.body.drop { $0.isWhitespace }.first.map { $0 == "{" || $0 == "[" } == true
            let stored = try await controlPlane.apply(body: request.body, json: json)
            return .json(APIMessages.ApplyResponse(applied: stored.map {
                APIMessages.AppliedResource(kind: $0.kind.rawValue, name: $0.name, resourceVersion: $0.resourceVersion ?? "")
            }))
        case .listAll:
            return APIResponse(status: 200, body: MeshResource.json(try await controlPlane.list(kind: nil)) + "\n")
        case .listKind:
            let kind = try Self.kind(captures[0])
            return APIResponse(status: 200, body: MeshResource.json(try await controlPlane.list(kind: kind)) + "\n")
        case .getResource:
            let resource = try await controlPlane.get(kind: try Self.kind(captures[0]), name: captures[1])
            return APIResponse(status: 200, body: resource.json + "\n")
        case .deleteResource:
            try await controlPlane.delete(kind: try Self.kind(captures[0]), name: captures[1])
            return APIResponse(status: 200, body: "{\"deleted\":true}\n")
        case .createToken:
            let body = try Self.decode(APIMessages.TokenRequest.self, request.body)
            var ttl: MeshDuration?
            if let text = body.ttl {
                guard let parsed = MeshDuration(parsing: text) else {
                    throw APIError.badRequest("ttl \"\(text)\" is not a duration (use 30m, 1h, 24h)")
                }
                ttl = parsed
            }
            return .json(try await controlPlane.createJoinToken(service: body.service, ttl: ttl, uses: body.uses), status: 201)
        case .listTokens:
            return .json(try await controlPlane.joinTokens())
        case .revokeToken:
            return .json(try await controlPlane.revokeJoinToken(id: captures[0]))
        case .caBundle:
            return APIResponse(status: 200, contentType: "application/x-pem-file", body: controlPlane.authority.rootPEM)
        case .certificates:
            let body = try Self.decode(APIMessages.CertificateRequest.self, request.body)
            return .json(try await controlPlane.issueCertificate(csrPEM: body.csr, principal: try caller()), status: 201)
        case .register:
            let body = try Self.decode(APIMessages.RegisterRequest.self, request.body)
            return .json(try await controlPlane.register(body, principal: try caller()), status: 201)
        case .heartbeat:
            let body = try Self.decode(APIMessages.HeartbeatRequest.self, request.body)
            try await controlPlane.heartbeat(body, principal: try caller())
            return APIResponse(status: 200, body: "{\"ok\":true}\n")
        case .deregister:
            let body = try Self.decode(APIMessages.DeregisterRequest.self, request.body)
            try await controlPlane.deregister(body, principal: try caller())
            return APIResponse(status: 200, body: "{\"ok\":true}\n")
        case .snapshot:
            var known: Int64?
            if let text = request.query["version"], !text.isEmpty {
                guard let value = Int64(text) else { throw APIError.badRequest("version \"\(text)\" is not an integer") }
                known = value
            }
            var rejected: Int64?
            if let text = request.query["rejected"], !text.isEmpty {
                guard let value = Int64(text) else { throw APIError.badRequest("rejected \"\(text)\" is not an integer") }
                rejected = value
            }
            let snapshot = try await controlPlane.watch(
                service: captures[0], knownVersion: known, rejectedVersion: rejected, instance: request.query["instance"],
                principal: try caller(), timeout: watchTimeout)
            guard let snapshot else { return APIResponse(status: 304, body: "") }
            return APIResponse(status: 200, bytes: snapshot.body)
        case .proxies:
            return .json(try await controlPlane.proxies())
        case .dashboard:
            return await dashboard.respond(to: request)
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
