import MeshTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// An endpoint that accepts connections and closes them before the TLS handshake finishes (an
/// instance shutting down closes what it accepted last): nothing of a request reached it, so a
/// request that lands there is sent to another endpoint as after a refused connect
/// (`retryOn: connect-failure`), not answered with `tls-failed`.
@Suite(.serialized) struct HandshakeCloseRetryTests {
    /// HTTP/1.1 callers (curl through web's outbound as a proxy), and HTTP/2 callers (h2c with
    /// prior knowledge: web calls payments over HTTP/2 too).
    @Test(arguments: [false, true])
    func anEndpointClosingDuringTheHandshakeIsRetriedElsewhere(http2: Bool) async throws {
        let app = try await TestHTTPApp(name: "payments")
        let accepted = NIOLockedValueBox(0)
        let closer = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 += 1 }
                return channel.close()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { closer.close(promise: nil) }
        let closerPort = try #require(closer.localAddress?.port)
        let mesh = try await PaymentsMesh(backends: [(app, "version: v1")], webResources: """
              - { kind: Instance, service: payments, address: 127.0.0.1, port: \(closerPort), labels: { version: v1 } }
            """)
        // Until the balancer has sent at least one request to the closing endpoint.
        var sent = 0
        while accepted.withLockedValue({ $0 }) == 0, sent < 200 {
            let statuses: [Substring]
            if http2 {
                // One curl per request: curl 7.88 fails a reused h2c prior-knowledge connection
                // before it sends anything ("Error in the HTTP2 framing layer", curl/curl#10634).
                let result = try await ChildProcess.run([
                    "bash", "-c",
                    "for i in $(seq 0 19); do curl -sS --http2-prior-knowledge -H 'Host: payments' -w '%{http_code}\\n' "
                        + "-o /dev/null http://127.0.0.1:\(mesh.webOut)/pay/$i; done",
                ])
                statuses = result.stdout.split(separator: "\n")
                #expect(result.stderr.isEmpty, "curl said: \(result.stderr)")
            } else {
                statuses = try await mesh.run((0..<20).map { "http://payments/pay/\($0)" }, format: "%{http_code}\\n")
            }
            #expect(statuses.count == 20 && statuses.allSatisfy { $0 == "200" }, "\(statuses) \(mesh.web.logs)")
            sent += 20
        }
        #expect(accepted.withLockedValue { $0 } >= 1, "the balancer never chose the closing endpoint")
        #expect(app.requests == sent)
        let metrics = try await mesh.webMetrics()
        #expect((metricValue(metrics, "sidecar_retries_total", ["reason": "connect-failure"]) ?? 0) >= 1, "\(metrics)")
    }
}
