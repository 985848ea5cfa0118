import ControlPlane
import Foundation
import MeshAPI
import SidecarCore
import Testing

/// The dashboard through the router in memory: session rules, sign-in and sign-out, security
/// headers, escaping, and the change feed its live pages wait on.
@Suite struct DashboardTests {
    func page(_ fixture: ControlPlaneFixture, _ method: String, _ uri: String, cookie: String? = nil, body: String = "",
              headers extra: [(String, String)] = []) async -> APIResponse {
        var headers = extra
        if let cookie { headers.append(("Cookie", cookie)) }
        return await fixture.router.handle(APIRequest(method: method, uri: uri, headers: headers, body: body, peerIdentity: nil))
    }

    func header(_ response: APIResponse, _ name: String) -> String? {
        response.headers.first { $0.0 == name }?.1
    }

    func signIn(_ fixture: ControlPlaneFixture) async throws -> String {
        let response = await page(fixture, "POST", "/ui/login", body: "token=\(ControlPlaneFixture.adminToken)")
        #expect(response.status == 303 && header(response, "location") == "/ui/")
        let cookie = try #require(header(response, "set-cookie"))
        return String(cookie.split(separator: ";")[0])
    }

    @Test func withoutASessionPagesRedirectAndDataIsRefused() async throws {
        let fixture = try ControlPlaneFixture()
        defer { fixture.remove() }
        for path in ["/ui/", "/ui/proxies", "/ui/topology", "/ui/resources", "/ui/services/web", "/ui/unknown"] {
            let response = await page(fixture, "GET", path)
            #expect(response.status == 303 && header(response, "location") == "/ui/login", "\(path)")
        }
        #expect(await page(fixture, "GET", "/ui/events?after=0").status == 401)
        #expect(await page(fixture, "GET", "/ui/proxies", cookie: "mesh_session=forged").status == 303)
        // A bearer token is not a session.
        #expect(await fixture.request("GET", "/ui/").status == 303)
        let login = await page(fixture, "GET", "/ui/login")
        #expect(login.status == 200 && login.contentType.hasPrefix("text/html"))
        #expect(header(login, "content-security-policy")?.contains("script-src 'self'") == true)
        #expect(await page(fixture, "GET", "/ui/assets/dashboard.js").status == 200)
    }

    @Test func signInSetsASecureCookieAndSignOutEndsIt() async throws {
        let fixture = try ControlPlaneFixture()
        defer { fixture.remove() }
        let wrong = await page(fixture, "POST", "/ui/login", body: "token=nope")
        #expect(wrong.status == 401 && header(wrong, "set-cookie") == nil && wrong.body.contains("not the admin token"))
        let crossOrigin = await page(
            fixture, "POST", "/ui/login", body: "token=\(ControlPlaneFixture.adminToken)",
            headers: [("Origin", "https://elsewhere"), ("Host", "127.0.0.1:15010")])
        #expect(crossOrigin.status == 403)
        let raw = await page(fixture, "POST", "/ui/login", body: "token=\(ControlPlaneFixture.adminToken)")
        let setCookie = try #require(header(raw, "set-cookie"))
        for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] { #expect(setCookie.contains(flag)) }
        let cookie = try await signIn(fixture)
        let overview = await page(fixture, "GET", "/ui/", cookie: cookie)
        #expect(overview.status == 200 && overview.body.contains("<h1>Overview</h1>"))
        // The session opens no API route.
        #expect(await fixture.request("GET", "/v1/proxies", token: nil).status == 401)
        let out = await page(fixture, "POST", "/ui/logout", cookie: cookie)
        #expect(out.status == 303 && header(out, "set-cookie")?.contains("Max-Age=0") == true)
        #expect(await page(fixture, "GET", "/ui/", cookie: cookie).status == 303)
    }

    @Test func pagesShowServicesHealthInWordsAndEscapeWhatTheyShow() async throws {
        let fixture = try ControlPlaneFixture()
        defer { fixture.remove() }
        let applied = await fixture.request("POST", "/v1/apply", body: """
            kind: Instance
            service: payments
            address: 127.0.0.1
            port: 16006
            labels: { version: "<b>v1</b>" }
            ---
            kind: Route
            service: payments
            rules: [ { match: { pathPrefix: /pay }, backends: [ { subset: { version: v1 }, weight: 100 } ] } ]
            """)
        #expect(applied.status == 200, "\(applied.body)")
        let cookie = try await signIn(fixture)
        let overview = await page(fixture, "GET", "/ui/", cookie: cookie)
        #expect(overview.body.contains("payments") && overview.body.contains("1 of 1 healthy"))
        let service = await page(fixture, "GET", "/ui/services/payments", cookie: cookie)
        #expect(service.status == 200)
        #expect(service.body.contains("&lt;b&gt;v1&lt;/b&gt;") && !service.body.contains("<b>v1</b>"))
        #expect(service.body.contains("Route payments"))
        #expect(await page(fixture, "GET", "/ui/services/nobody", cookie: cookie).status == 404)
        for path in ["/ui/proxies", "/ui/topology", "/ui/resources"] {
            let response = await page(fixture, "GET", path, cookie: cookie)
            #expect(response.status == 200 && !response.body.contains("<script>") && !response.body.contains(" style="), "\(path)")
        }
        let topology = await page(fixture, "GET", "/ui/topology", cookie: cookie)
        #expect(topology.body.contains("data-service=\"payments\""))
    }

    @Test func theLivePollAnswersWhenTheMeshChanges() async throws {
        let fixture = try ControlPlaneFixture()
        defer { fixture.remove() }
        let cookie = try await signIn(fixture)
        let generation = fixture.controlPlane.changes.generation
        // A poll that is behind answers at once.
        let behind = await page(fixture, "GET", "/ui/events?after=\(generation &+ 99)", cookie: cookie)
        #expect(behind.body.contains("\"\(generation)\""))
        async let waited = page(fixture, "GET", "/ui/events?after=\(generation)", cookie: cookie)
        let feed = fixture.controlPlane.changes
        var polls = 0
        while feed.waiterCount == 0, polls < 1000 {
            polls += 1
            await Task.yield()
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(await fixture.request("POST", "/v1/apply", body: "kind: Service\nname: web\n").status == 200)
        let answer = await waited
        #expect(answer.status == 200 && !answer.body.contains("\"\(generation)\""), "\(answer.body)")
    }

    @Test func theChangeFeedTimesOutWithTheSameGeneration() async {
        let feed = MeshChangeFeed()
        #expect(await feed.wait(after: 0, timeout: .milliseconds(20)) == 0)
        #expect(await feed.wait(after: 7, timeout: .seconds(5)) == 0)
        feed.changed()
        #expect(await feed.wait(after: 0, timeout: .seconds(5)) == 1)
        #expect(feed.waiterCount == 0)
    }
}
