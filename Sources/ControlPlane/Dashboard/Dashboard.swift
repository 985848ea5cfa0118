import Foundation
import NIOCore

/// The read-only web dashboard under `/ui` on the API port: sign-in with the admin token, a
/// session cookie, and the pages of `DashboardPages` rendered on the server from the control
/// plane's own state (plus Prometheus when configured). `APIRouter` hands it every `/ui` request.
///
/// Like the API, two steps: `admit` decides from the head alone (route and session), so a
/// request without a session is answered before its body is read: pages redirect to
/// `/ui/login`, data (`/ui/events`) gets 401. Only the sign-in page, its form post and the
/// static assets need no session. The API's bearer rules are untouched: a bearer token opens
/// no page, a session cookie opens no API route.
///
/// Every answer carries a strict Content-Security-Policy (scripts and styles only from our own
/// `/ui/assets/`, no inline script or style), `no-store` and `nosniff`.
public final class Dashboard: Sendable {
    public struct Configuration: Sendable {
        /// Golden metrics and traffic edges come from here when set (`serve --prometheus`).
        public var prometheus: PrometheusClient?
        public var sessionLifetime: Duration = .seconds(12 * 3600)
        /// How long `/ui/events` holds a request open when nothing changes.
        public var pollTimeout: Duration = .seconds(25)

        public init(prometheus: PrometheusClient? = nil) {
            self.prometheus = prometheus
        }

        /// With a Prometheus at `prometheusURL` (`http://host:port`), asked with a short
        /// timeout so a slow Prometheus slows a page by seconds at most.
        public init(prometheusURL: String?) throws(MeshStatError) {
            self.prometheus = try prometheusURL.map { url throws(MeshStatError) in try PrometheusClient(url: url, timeout: .seconds(3)) }
        }
    }

    static let cookieName = "mesh_session"
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    let controlPlane: MeshControlPlane
    let configuration: Configuration
    let sessions: DashboardSessions

    public init(controlPlane: MeshControlPlane, configuration: Configuration = Configuration()) {
        self.controlPlane = controlPlane
        self.configuration = configuration
        // Keyed by the admin token every replica shares: a session works on any of them.
        self.sessions = DashboardSessions(secret: controlPlane.adminToken, lifetime: configuration.sessionLifetime)
    }

    static func serves(path: String) -> Bool { path == "/ui" || path.hasPrefix("/ui/") }

    /// A dashboard request, from its method and path.
    enum Page: Equatable {
        case root, login, signIn, signOut, asset(String), overview, service(String), proxies, topology, resources, events
        case unknown

        init(method: String, path: String) {
            let segments = path.split(separator: "/", omittingEmptySubsequences: true).dropFirst().map(String.init)
            switch (method, segments.count, segments.first) {
            case ("GET", 0, _): self = path.hasSuffix("/") ? .overview : .root
            case ("GET", 1, "login"): self = .login
            case ("POST", 1, "login"): self = .signIn
            case ("POST", 1, "logout"): self = .signOut
            case ("GET", 2, "assets"): self = .asset(segments[1])
            case ("GET", 2, "services"): self = .service(segments[1].removingPercentEncoding ?? segments[1])
            case ("GET", 1, "proxies"): self = .proxies
            case ("GET", 1, "topology"): self = .topology
            case ("GET", 1, "resources"): self = .resources
            case ("GET", 1, "events"): self = .events
            default: self = .unknown
            }
        }

        /// The `route` label of `control_plane_api_requests_total`: bounded, no names.
        var template: String {
            switch self {
            case .root: "/ui"
            case .login, .signIn: "/ui/login"
            case .signOut: "/ui/logout"
            case .asset: "/ui/assets/{file}"
            case .overview: "/ui/"
            case .service: "/ui/services/{name}"
            case .proxies: "/ui/proxies"
            case .topology: "/ui/topology"
            case .resources: "/ui/resources"
            case .events: "/ui/events"
            case .unknown: "/ui/unmatched"
            }
        }

        var needsSession: Bool {
            switch self {
            case .login, .signIn, .asset, .root: false
            default: true
            }
        }
    }

    enum Admission {
        case accepted(template: String)
        case refused(template: String, APIResponse)
    }

    func admit(_ request: APIRequest) -> Admission {
        let page = Page(method: request.method, path: request.path)
        if request.method == "POST", !Self.sameOrigin(request) {
            return .refused(template: page.template, Self.text(403, "cross-origin form posts are refused"))
        }
        guard page.needsSession, !sessions.isValid(Self.sessionID(request)) else { return .accepted(template: page.template) }
        if page == .events {
            return .refused(template: page.template, Self.text(401, "sign in at /ui/login"))
        }
        return .refused(template: page.template, Self.redirect("/ui/login"))
    }

    func respond(to request: APIRequest) async -> APIResponse {
        switch Page(method: request.method, path: request.path) {
        case .root:
            return Self.redirect("/ui/")
        case .login:
            return Self.page(DashboardPages.login(message: nil))
        case .signIn:
            let token = Self.form(request.body)["token"]?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            guard !token.isEmpty, (try? controlPlane.authenticate(bearer: token, peer: nil)) == .admin else {
                return Self.page(DashboardPages.login(message: "That is not the admin token."), status: 401)
            }
            var response = Self.redirect("/ui/")
            let seconds = Int(sessions.lifetime.components.seconds)
            response.headers.append((
                "set-cookie",
                "\(Self.cookieName)=\(sessions.create()); Path=/ui; Max-Age=\(seconds); HttpOnly; Secure; SameSite=Strict"
            ))
            return response
        case .signOut:
            sessions.end(Self.sessionID(request))
            var response = Self.redirect("/ui/login")
            response.headers.append(("set-cookie", "\(Self.cookieName)=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict"))
            return response
        case .asset(let name):
            guard let asset = DashboardAssets.named(name) else { return Self.text(404, "no asset \(name)") }
            var response = APIResponse(status: 200, contentType: asset.contentType, body: asset.body)
            response.headers = Self.securityHeaders(cache: "public, max-age=300")
            return response
        case .events:
            let after = request.query["after"].flatMap { UInt64($0) } ?? UInt64.max
            let generation = await controlPlane.changes.wait(after: after, timeout: configuration.pollTimeout)
            var response = APIResponse(status: 200, body: "{\"generation\":\"\(generation)\"}\n")
            response.headers = Self.securityHeaders()
            return response
        case .overview:
            let model = await model()
            let expiry = await DashboardMetrics.soonestCertificateExpiry(proxies: model.proxies, prometheus: configuration.prometheus)
            return Self.page(DashboardPages.overview(model, certificateExpiry: expiry))
        case .service(let name):
            let model = await model()
            guard model.services.contains(where: { $0.name == name }) else {
                return Self.page(DashboardPages.notFound(model, what: "service \(name)"), status: 404)
            }
            let charts = await DashboardMetrics.charts(service: name, prometheus: configuration.prometheus)
            return Self.page(DashboardPages.service(model, name: name, charts: charts))
        case .proxies:
            return Self.page(DashboardPages.proxies(await model()))
        case .topology:
            let model = await model()
            let traffic = await DashboardMetrics.edges(prometheus: configuration.prometheus)
            return Self.page(DashboardPages.topology(model, traffic: traffic))
        case .resources:
            return Self.page(DashboardPages.resources(await model()))
        case .unknown:
            return Self.page(DashboardPages.notFound(await model(), what: "page \(request.path)"), status: 404)
        }
    }

    private func model() async -> DashboardModel {
        await DashboardModel.load(controlPlane, prometheus: configuration.prometheus?.url)
    }

    // MARK: Requests and answers

    static func sessionID(_ request: APIRequest) -> String? {
        for header in request.headers where header.0.lowercased() == "cookie" {
            for part in header.1.split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces)
                if pair.hasPrefix(cookieName + "=") { return String(pair.dropFirst(cookieName.count + 1)) }
            }
        }
        return nil
    }

    /// A form post must come from our own pages: an `Origin` (browsers send one on POST) must
    /// name the `Host` it was sent to. The session cookie is `SameSite=Strict` besides.
    /// (`Referrer-Policy: same-origin`, since `no-referrer` makes Chrome send `Origin: null`.)
    static func sameOrigin(_ request: APIRequest) -> Bool {
        if let site = request.header("sec-fetch-site"), site != "same-origin", site != "none" { return false }
        guard let origin = request.header("origin") else { return true }
        guard let host = request.header("host") else { return false }
        return origin == "https://" + host
    }

    /// `application/x-www-form-urlencoded` fields.
    static func form(_ body: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                let spaced = text.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            fields[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return fields
    }

    static func securityHeaders(cache: String = "no-store") -> [(String, String)] {
        [
            ("content-security-policy", contentSecurityPolicy),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
            ("x-frame-options", "DENY"),
            ("cache-control", cache),
        ]
    }

    static func page(_ html: String, status: Int = 200) -> APIResponse {
        var response = APIResponse(status: status, contentType: "text/html; charset=utf-8", body: html)
        response.headers = securityHeaders()
        return response
    }

    static func redirect(_ location: String) -> APIResponse {
        var response = APIResponse(status: 303, contentType: "text/plain; charset=utf-8", body: "see \(location)\n")
        response.headers = securityHeaders() + [("location", location)]
        return response
    }

    static func text(_ status: Int, _ message: String) -> APIResponse {
        var response = APIResponse(status: status, body: "{\"error\":\"\(message)\"}\n")
        response.headers = securityHeaders()
        return response
    }
}
