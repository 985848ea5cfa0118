import Foundation
import MeshTestSupport
import NIOCore
import NIOPosix
import SidecarCore
import Testing

/// Our TLS layer against real peers over loopback sockets: `openssl s_client`, `curl`,
/// `openssl s_server`, and certificates made by the `openssl` CLI.
@Suite(.serialized) struct TLSInteropTests {
    static let pki = TestPKI()
    static let web = pki.issue(service: "web")
    static let payments = pki.issue(service: "payments", dnsNames: ["localhost"])
    let group = MultiThreadedEventLoopGroup.singleton

    func serverStore() throws -> TLSContextStore {
        TLSContextStore(try TLSContext(configuration: Self.payments.configuration(), role: .server))
    }

    /// `openssl s_client` with web's certificate (and `arguments`) sends lines to our echo
    /// server and reads each back, then closes cleanly; the server and s_client's stderr (its
    /// `-brief` summary) for the test to check. A line's `command` (s_client's `K`, `k`) goes
    /// first, alone: s_client takes a whole read of its input as one command.
    func echoedForOpensslClient(
        _ arguments: [String] = [], lines: [(command: String?, line: String)] = [(nil, "hello mesh")]
    ) async throws -> (server: TLSTestServer, summary: String) {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = try Self.web.write(to: directory.url, name: "web")
        let server = try await TLSTestServer(group: group, store: serverStore(), fixture: .echo)
        let client = try ChildProcess([
            "openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_3", "-brief", "-no_ign_eof",
            "-servername", "payments", "-cert", files.cert, "-key", files.key, "-CAfile", files.ca, "-verify_return_error",
        ] + arguments)
        defer { client.terminate() }
        var commands = 0
        for (command, line) in lines {
            if let command {
                client.write("\(command)\n")
                commands += 1
                let sent = commands
                #expect(await eventually { client.stderr.components(separatedBy: "KEYUPDATE").count - 1 == sent })
            }
            client.write("\(line)\n")
            #expect(await eventually { client.stdout.contains(line) }, "s_client said: \(client.stdout) \(client.stderr)")
        }
        client.closeInput()
        #expect(await client.wait() == 0, "s_client said: \(client.stderr)")
        try await server.close()
        return (server, client.stderr)
    }

    @Test func opensslClientWithCertificateIsEchoed() async throws {
        let (server, _) = try await echoedForOpensslClient(["-alpn", "http/1.1"])
        #expect(server.connections.first?.handshakeInfo?.peerIdentity?.serviceName == "web")
        #expect(server.errorReasons.isEmpty)
    }

    /// TLS 1.3 suites: our server picks AES-128-GCM over the AES-256-GCM an OpenSSL client lists
    /// first, ChaCha20 for a client that prefers it (no AES in hardware), and still accepts a
    /// client that offers only AES-256-GCM.
    @Test(arguments: [
        (offered: nil, chosen: "TLS_AES_128_GCM_SHA256"),
        (offered: "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256", chosen: "TLS_CHACHA20_POLY1305_SHA256"),
        (offered: "TLS_AES_256_GCM_SHA384", chosen: "TLS_AES_256_GCM_SHA384"),
    ] as [(offered: String?, chosen: String)])
    func theServerChoosesTheCipherSuite(offered: String?, chosen: String) async throws {
        let (_, summary) = try await echoedForOpensslClient(offered.map { ["-ciphersuites", $0] } ?? [])
        #expect(summary.contains("Ciphersuite: \(chosen)\n"), "s_client said: \(summary)")
    }

    /// After the handshake our server reads and writes records with the mesh's own record
    /// layer. s_client's `K` sends a KeyUpdate asking for ours and `k` one that does not: the
    /// server moves its read key for both and answers the first with a KeyUpdate of its own
    /// (s_client then reads with its next key), and every line is still echoed.
    @Test func keyUpdatesFromAnOpensslClientAreFollowedAndAnswered() async throws {
        let (server, summary) = try await echoedForOpensslClient(lines: [
            (nil, "before any update"), ("K", "after K"), ("k", "after k"), ("K", "after K again"),
        ])
        #expect(server.errorReasons.isEmpty)
        #expect(summary.components(separatedBy: "KEYUPDATE").count - 1 == 3, "s_client said: \(summary)")
    }

    @Test func opensslClientWithoutCertificateIsRefused() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = try Self.web.write(to: directory.url, name: "web")
        let server = try await TLSTestServer(group: group, store: serverStore(), fixture: .echo)
        let client = try ChildProcess([
            "openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_3", "-quiet", "-no_ign_eof",
            "-CAfile", files.ca,
        ])
        defer { client.terminate() }
        client.write("hello mesh\n")
        #expect(await eventually { server.errorReasons == [.peerNoCertificate] })
        let status = await client.wait(timeout: .seconds(10))
        try await server.close()
        #expect(status != 0)
        #expect(!client.stdout.contains("hello mesh"))
        #expect(client.stderr.contains("certificate required"), "s_client said: \(client.stderr)")
    }

    @Test func opensslClientOfferingOnlyTLS12IsRefused() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = try Self.web.write(to: directory.url, name: "web")
        let server = try await TLSTestServer(group: group, store: serverStore(), fixture: .echo)
        let result = try await ChildProcess.run([
            "openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_2", "-quiet", "-no_ign_eof",
            "-cert", files.cert, "-key", files.key, "-CAfile", files.ca,
        ], input: "hello mesh\n")
        #expect(await eventually { server.errorReasons == [.protocolVersion] })
        try await server.close()
        #expect(result.status != 0)
        #expect(!result.stdout.contains("hello mesh"))
    }

    @Test func curlWithClientCertificateGetsTheResponse() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = try Self.web.write(to: directory.url, name: "web")
        let server = try await TLSTestServer(group: group, store: serverStore(), fixture: .http(body: "hello from mesh"))
        let result = try await ChildProcess.run([
            "curl", "-sS", "--max-time", "10", "--tlsv1.3", "--cacert", files.ca, "--cert", files.cert, "--key", files.key,
            "--resolve", "localhost:\(server.port):127.0.0.1", "https://localhost:\(server.port)/hello",
        ])
        try await server.close()
        #expect(result.status == 0, "curl said: \(result.stderr)")
        #expect(result.stdout == "hello from mesh")
        #expect(server.connections.first?.handshakeInfo?.peerIdentity?.serviceName == "web")
    }

    @Test func curlWithoutClientCertificateIsRefused() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = try Self.web.write(to: directory.url, name: "web")
        let server = try await TLSTestServer(group: group, store: serverStore(), fixture: .http(body: "secret"))
        let result = try await ChildProcess.run([
            "curl", "-sS", "--max-time", "10", "--cacert", files.ca, "--resolve", "localhost:\(server.port):127.0.0.1",
            "https://localhost:\(server.port)/hello",
        ])
        #expect(await eventually { server.errorReasons == [.peerNoCertificate] })
        try await server.close()
        #expect(result.status != 0)
        #expect(!result.stdout.contains("secret"))
    }

    @Test func ourClientAgainstOpensslServerRequiringClientCertificates() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = try Self.payments.write(to: directory.url, name: "payments")
        let port = try freeLoopbackPort()
        let server = try ChildProcess([
            "openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-tls1_3", "-Verify", "1",
            "-verify_return_error", "-cert", files.cert, "-key", files.key, "-CAfile", files.ca, "-rev", "-naccept", "1",
        ])
        defer { server.terminate() }
        #expect(await eventually { server.stdout.contains("ACCEPT") })
        let context = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let (channel, recorder) = try await connectTLSClient(
            group: group, port: port, context: context, serverName: "payments",
            peerIdentity: .exactly([SPIFFEID.service("payments")!]))
        try await channel.writeAndFlush(ByteBuffer(string: "hello\n"))
        #expect(await eventually { recorder.received.contains("olleh") }, "s_server said: \(server.stdout) \(server.stderr)")
        #expect(recorder.handshakeInfo?.peerIdentity?.serviceName == "payments")
        try? await channel.close()
        #expect(await eventually { server.stderr.contains("Ciphersuite: TLS_AES_128_GCM_SHA256\n") },
                "our client lists AES-128-GCM first; s_server said: \(server.stderr)")
    }

    @Test func ourClientRefusesOpensslServerWithTheWrongIdentity() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let files = try Self.payments.write(to: directory.url, name: "payments")
        let port = try freeLoopbackPort()
        let server = try ChildProcess([
            "openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-tls1_3", "-cert", files.cert, "-key", files.key,
            "-CAfile", files.ca, "-rev", "-naccept", "1",
        ])
        defer { server.terminate() }
        #expect(await eventually { server.stdout.contains("ACCEPT") })
        let context = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let (channel, recorder) = try await connectTLSClient(
            group: group, port: port, context: context, serverName: "orders",
            peerIdentity: .exactly([SPIFFEID.service("orders")!]))
        channel.writeAndFlush(ByteBuffer(string: "hello\n"), promise: nil)
        #expect(await eventually { recorder.closed })
        #expect(recorder.errors.map(\.reason) == [.identityMismatch])
        #expect(recorder.receivedCount == 0)
    }

    @Test func certificatesAndKeysMadeByTheOpensslCLI() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let dir = directory.path
        func openssl(_ args: [String]) async throws {
            let result = try await ChildProcess.run(["openssl"] + args, directory: dir)
            #expect(result.status == 0, "openssl \(args.joined(separator: " ")): \(result.stderr)")
        }
        try await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                           "-days", "1", "-subj", "/CN=openssl root"])
        // web: a SEC1 "EC PRIVATE KEY"; payments: an RSA key in traditional "RSA PRIVATE KEY" form.
        try await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "web.key"])
        try await openssl(["genrsa", "-traditional", "-out", "payments.key", "2048"])
        for service in ["web", "payments"] {
            try "subjectAltName=URI:spiffe://mesh.local/service/\(service)\n"
                .write(toFile: "\(dir)/\(service).ext", atomically: true, encoding: .utf8)
            try await openssl(["req", "-new", "-key", "\(service).key", "-out", "\(service).csr", "-subj", "/CN=\(service)"])
            try await openssl(["x509", "-req", "-in", "\(service).csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                               "-CAcreateserial", "-days", "1", "-extfile", "\(service).ext", "-out", "\(service).pem"])
        }
        let webKey = try String(contentsOfFile: "\(dir)/web.key", encoding: .utf8)
        let paymentsKey = try String(contentsOfFile: "\(dir)/payments.key", encoding: .utf8)
        #expect(webKey.contains("BEGIN EC PRIVATE KEY"))
        #expect(paymentsKey.contains("BEGIN RSA PRIVATE KEY"))

        let serverContext = try TLSContext(
            configuration: .mesh(certificateChain: .file("\(dir)/payments.pem"), privateKey: .file("\(dir)/payments.key"),
                                 trustRoots: .file("\(dir)/ca.pem")), role: .server)
        let clientContext = try TLSContext(
            configuration: .mesh(certificateChain: .file("\(dir)/web.pem"), privateKey: .file("\(dir)/web.key"),
                                 trustRoots: .file("\(dir)/ca.pem")), role: .client)
        let server = try await TLSTestServer(group: group, store: TLSContextStore(serverContext), fixture: .echo)
        let (channel, recorder) = try await connectTLSClient(
            group: group, port: server.port, context: clientContext, serverName: "payments",
            peerIdentity: .exactly([SPIFFEID.service("payments")!]))
        try await channel.writeAndFlush(ByteBuffer(string: "over openssl-made certs"))
        #expect(await eventually { recorder.received == "over openssl-made certs" })
        #expect(server.connections.first?.handshakeInfo?.peerIdentity?.serviceName == "web")
        try await channel.close()
        try await server.close()
    }

    @Test func rotatedCertificateServesNewConnectionsWhileOldOnesKeepWorking() async throws {
        let store = try serverStore()
        let server = try await TLSTestServer(group: group, store: store, fixture: .echo)
        let clientContext = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let (old, oldRecorder) = try await connectTLSClient(
            group: group, port: server.port, context: clientContext, serverName: "payments")
        try await old.writeAndFlush(ByteBuffer(string: "a"))
        #expect(await eventually { oldRecorder.received == "a" })

        let rotated = Self.pki.issue(service: "payments", lifetime: 7200)
        store.replace(with: try TLSContext(configuration: rotated.configuration(), role: .server))
        let freshClient = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let (new, newRecorder) = try await connectTLSClient(
            group: group, port: server.port, context: freshClient, serverName: "payments")
        try await new.writeAndFlush(ByteBuffer(string: "b"))
        #expect(await eventually { newRecorder.received == "b" })

        let oldExpiry = try #require(oldRecorder.handshakeInfo?.peerCertificateNotAfter)
        let newExpiry = try #require(newRecorder.handshakeInfo?.peerCertificateNotAfter)
        #expect(newExpiry > oldExpiry + 3000)
        try await old.writeAndFlush(ByteBuffer(string: "c"))
        #expect(await eventually { oldRecorder.received == "ac" })
        try await old.close()
        try await new.close()
        try await server.close()
    }

    @Test func aSlowReaderPushesBackOnTheWriter() async throws {
        let server = try await TLSTestServer(group: group, store: serverStore(), fixture: .echo)
        let clientContext = try TLSContext(configuration: Self.web.configuration(), role: .client)
        // The client never reads, so the echo server's writes must back up into its socket.
        let (channel, recorder) = try await connectTLSClient(
            group: group, port: server.port, context: clientContext, serverName: "payments", autoRead: false)
        channel.read()
        #expect(await eventually { recorder.handshakeInfo != nil })
        let chunk = ByteBuffer(repeating: 0x61, count: 1 << 20)
        var written = 0
        // Write until our own channel says stop: TLS output is applied to the socket as written.
        while channel.isWritable, written < (256 << 20) {
            channel.writeAndFlush(chunk, promise: nil)
            written += chunk.readableBytes
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(!channel.isWritable)
        #expect(written < 64 << 20, "wrote \(written) bytes before the channel became unwritable")
        try await channel.close()
        try await server.close()
    }
}
