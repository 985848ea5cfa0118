import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import SidecarCore

/// The admin routing table in memory: every route, readiness words, 404 and 405.
@Suite struct AdminRouterTests {
    final class ReadinessSwitch: Sendable {
        let state = Mutex(Readiness.notReady)
        var readiness: Readiness { state.withLock { $0 } }
        func set(_ readiness: Readiness) { state.withLock { $0 = readiness } }
    }

    static func router(metrics: SidecarMetrics = SidecarMetrics(), readiness: ReadinessSwitch = ReadinessSwitch()) -> AdminRouter {
        AdminRouter(providers: AdminProviders(
            metrics: metrics.registry, readiness: { readiness.readiness },
            config: { #"{"service":"web"}"# }, clusters: { #"{"clusters":[]}"# }))
    }

    static func get(_ router: AdminRouter, _ uri: String, method: HTTPMethod = .GET) -> (HTTPResponseStatus, String, AdminResponse) {
        let response = router.respond(method: method, uri: uri, allocator: ByteBufferAllocator())
        return (response.status, String(buffer: response.body), response)
    }

    @Test func readinessFollowsTheProvider() {
        let readiness = ReadinessSwitch()
        let router = Self.router(readiness: readiness)
        #expect(Self.get(router, "/ready").0 == .serviceUnavailable)
        #expect(Self.get(router, "/ready").1 == #"{"status":"not ready","source":"file"}"# + "\n")
        readiness.set(.ready)
        #expect(Self.get(router, "/ready").0 == .ok)
        #expect(Self.get(router, "/ready").1 == #"{"status":"ready","source":"file"}"# + "\n")
        #expect(Self.get(router, "/ready").2.contentType == "application/json")
        readiness.set(.draining)
        #expect(Self.get(router, "/ready").0 == .serviceUnavailable)
        #expect(Self.get(router, "/ready").1 == #"{"status":"draining","source":"file"}"# + "\n")
    }

    @Test func readinessSaysWhereTheConfigurationCameFrom() {
        let readiness = ReadinessSwitch()
        readiness.set(.ready)
        let router = AdminRouter(providers: AdminProviders(
            metrics: SidecarMetrics().registry, readiness: { readiness.readiness }, source: { .lastKnownGood }))
        #expect(Self.get(router, "/ready").0 == .ok)
        #expect(Self.get(router, "/ready").1 == #"{"status":"ready","source":"last-known-good"}"# + "\n")
    }

    @Test func routesAnswerWithTheirContent() {
        let metrics = SidecarMetrics()
        metrics.configurationVersion.set(3)
        let router = Self.router(metrics: metrics)
        let (status, body, response) = Self.get(router, "/metrics?name[]=x")
        #expect(status == .ok)
        #expect(response.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(body.contains("sidecar_config_version 3\n"))
        #expect(Self.get(router, "/live").0 == .ok)
        #expect(Self.get(router, "/config").1 == #"{"service":"web"}"#)
        #expect(Self.get(router, "/config").2.contentType == "application/json")
        #expect(Self.get(router, "/clusters").1 == #"{"clusters":[]}"#)
        #expect(Self.get(router, "/nope").0 == .notFound)
        #expect(Self.get(router, "/metrics/").0 == .notFound)
    }

    @Test func onlyGetIsAllowed() {
        let router = Self.router()
        for method in [HTTPMethod.POST, .PUT, .DELETE, .HEAD] {
            let (status, _, response) = Self.get(router, "/metrics", method: method)
            #expect(status == .methodNotAllowed)
            #expect(response.headers.contains { $0.0 == "Allow" && $0.1 == "GET" })
        }
        #expect(Self.get(router, "/unknown", method: .POST).0 == .methodNotAllowed)
    }
}
