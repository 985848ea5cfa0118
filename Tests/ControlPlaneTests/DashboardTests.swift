import ControlPlane
import MeshTestSupport
import Foundation
import MeshAPI
import SidecarCore
import Testing

/// The dashboard through the router in memory: session rules, sign-in and sign-out, security
/// headers, escaping, and the change feed its live pages wait on.
@Suite(.sharedEtcdCluster) struct DashboardTests {
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

    @Test(arguments: StoreBackend.available) func withoutASessionPagesRedirectAndDataIsRefused(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
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

    @Test(arguments: StoreBackend.available) func signInSetsASecureCookieAndSignOutEndsIt(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
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

    @Test(arguments: StoreBackend.available) func pagesShowServicesHealthInWordsAndEscapeWhatTheyShow(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
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

    @Test(arguments: StoreBackend.available) func theLivePollAnswersWhenTheMeshChanges(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
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

    /// A session is a token signed with a key from the admin token: another replica (another
    /// `DashboardSessions` with the same admin token) accepts it; nothing else does.
    @Test func aSessionIsASignedTokenEveryReplicaWithTheAdminTokenAccepts() {
        let now: Int64 = 1_900_000_000
        let a = DashboardSessions(secret: "admin-token", lifetime: .seconds(3600))
        let b = DashboardSessions(secret: "admin-token", lifetime: .seconds(3600))
        let token = a.create(now: now)
        #expect(a.isValid(token, now: now) && b.isValid(token, now: now + 3599))
        #expect(!b.isValid(token, now: now + 3600), "expired")
        #expect(!DashboardSessions(secret: "another-token").isValid(token, now: now), "another admin token, another key")
        // Tampering with any part breaks the signature: a later expiry, another id, another MAC.
        let parts = token.split(separator: ".").map(String.init)
        #expect(parts.count == 4)
        for forged in [
            [parts[0], String(now + 999_999), parts[2], parts[3]], [parts[0], parts[1], String(parts[2].reversed()), parts[3]],
            [parts[0], parts[1], parts[2], String(parts[3].reversed())],
        ] {
            #expect(!b.isValid(forged.joined(separator: "."), now: now), "\(forged)")
        }
        for junk in [nil, "", "v1", "v1.1.2.3", "v2.\(parts[1...].joined(separator: "."))", String(repeating: "a", count: 500)] {
            #expect(!b.isValid(junk, now: now))
        }
        // Two sessions are two tokens; signing one out leaves the other.
        let other = a.create(now: now)
        #expect(other != token)
        a.end(token, now: now)
        #expect(!a.isValid(token, now: now) && a.isValid(other, now: now))
    }

    /// Each heartbeat carries the sidecar's certificate notAfter; `/v1/proxies`, the proxies
    /// page and the overview show it without Prometheus. An older sidecar's heartbeat without
    /// the field is accepted and changes nothing about it.
    @Test(arguments: StoreBackend.available) func certificateExpiryComesFromHeartbeats(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let token = try await fixture.controlPlane.createJoinToken(service: "web").token
        let registered = await fixture.request(
            "POST", "/v1/register", body: #"{"service":"web","address":"127.0.0.1","port":15006}"#, token: token)
        let name = try #require(jsonObject(registered.body)["name"] as? String)
        let cookie = try await signIn(fixture)
        #expect(await page(fixture, "GET", "/ui/", cookie: cookie).body.contains("no proxy has reported one yet"))

        let notAfter = Int64(Date().timeIntervalSince1970) + 5 * 3600
        let heartbeat = #"{"name":"\#(name)","certificateExpiresAt":\#(notAfter)}"#
        #expect(await fixture.request("POST", "/v1/heartbeat", body: heartbeat, token: token).status == 200)
        let old = #"{"name":"\#(name)","version":"\#(fixture.version)"}"#
        #expect(await fixture.request("POST", "/v1/heartbeat", body: old, token: token).status == 200, "an old sidecar's heartbeat")

        let proxies = await fixture.request("GET", "/v1/proxies")
        #expect(proxies.body.contains(#""certificateExpiresAt":\#(notAfter)"#), "\(proxies.body)")
        let at = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(notAfter)))
        let proxiesPage = await page(fixture, "GET", "/ui/proxies", cookie: cookie)
        #expect(proxiesPage.body.contains("Certificate expires") && proxiesPage.body.contains(at), "\(proxiesPage.body)")
        let overview = await page(fixture, "GET", "/ui/", cookie: cookie).body
        #expect(overview.contains("web in 4.") || overview.contains("web in 5.0 h"), "\(overview)")
        #expect(overview.contains(at))
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
