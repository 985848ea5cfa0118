import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// `mesh-bench cp-load`: light in-process sidecars against a running `control-plane serve`.
///
/// 1. Setup (untimed): a join token per service `svc-0…svc-{S-1}`; `Service backend`, three
///    `Instance`s of it and `Route backend` applied with the admin token.
/// 2. Registrations: `--registrations` distinct instances per round (service `svc-{i % S}`,
///    address `10.0.{round}.1`, port `20000+i`, `dependencies: [backend]`), sent by
///    `--concurrency` keep-alive connections, each registering its share back to back. Every
///    round but the last then deregisters them (timed too). The last round's instances stay.
/// 3. Watchers: one keep-alive connection per registered instance (up to the largest
///    `--watchers` size), each long-polling `/v1/snapshot/{its service}?version=V&instance=NAME`
///    like a sidecar. A round arms the first n watchers, waits until the server's
///    `control_plane_watchers` gauge is n, then applies `Route backend` with a new path prefix
///    (every watcher depends on backend, so every snapshot changes) and takes, per watcher,
///    the time from writing the apply request to the last byte of its new snapshot. Sizes
///    alternate per round (which size goes first alternates per pair).
/// 4. VmRSS of `--server-pid`: idle (after setup), with the first round's registrations, before
///    the watchers connect, and with all of the largest size armed.
///
/// Prints `key=value` lines; `--latencies` appends `size round ms` per watcher.
struct ControlPlaneLoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cp-load",
        abstract: "Registrations/s, apply -> watcher latency and RSS of a running control plane."
    )

    @Option(help: "Server address.") var host: String = "127.0.0.1"
    @Option(help: "Server port.") var port: Int
    @Option(help: "Ports of more replicas (comma-separated): registrations and watchers are spread over every replica, the apply goes to --port.")
    var morePorts: String = ""
    @Option(help: "The server's CA bundle (data dir ca.pem).") var ca: String
    @Option(help: "File with the admin token (data dir admin.token).") var adminTokenFile: String
    @Option(help: "Trust domain: the server must present spiffe://DOMAIN/control-plane.") var trustDomain: String = SPIFFEID.defaultTrustDomain
    @Option(help: "The server's process id (for VmRSS).") var serverPid: Int32
    @Option(help: "Services the instances are spread over (a join token each).") var services: Int = 10
    @Option(help: "Instances registered per round.") var registrations: Int = 1000
    @Option(help: "Registration rounds.") var registrationRounds: Int = 5
    @Option(help: "Keep-alive connections registering at once.") var concurrency: Int = 50
    @Option(help: "Watcher set sizes, comma-separated (each at most --registrations).") var watchers: String = "100,1000"
    @Option(help: "Watch rounds per size.") var watchRounds: Int = 5
    @Option(help: "Client event-loop threads.") var threads: Int = 1
    @Option(help: "Append per-watcher latencies (size round ms) to this file.") var latencies: String?

    func run() async throws {
        let sizes = watchers.split(separator: ",").compactMap { Int($0) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 && $0 <= registrations }) else {
            throw ValidationError("--watchers sizes must be between 1 and --registrations")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let address = try SocketAddress(ipAddress: host, port: port)
        let addresses = try [address] + morePorts.split(separator: ",").compactMap { Int($0) }.map { try SocketAddress(ipAddress: host, port: $0) }
        guard let controlPlane = SPIFFEID.controlPlane(trustDomain: trustDomain) else {
            throw ValidationError("--trust-domain \(trustDomain) is not a valid SPIFFE trust domain")
        }
        let tls = try TLSContext(
            configuration: TLSConfiguration(
                trustRoots: .file(ca), certificateVerification: .fullVerification, peerIdentity: .exactly([controlPlane])),
            role: .client)
        let adminToken = try String(contentsOfFile: adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let admin = try await APIConnection.connect(to: address, context: tls, on: group.next()).get()

        // 1. Setup.
        var tokenList: [String] = []
        for index in 0..<services {
            let reply = try await admin.request(.POST, "/v1/tokens", token: adminToken, body: #"{"service":"svc-\#(index)"}"#).get()
            try expect(reply, 201, "token")
            tokenList.append(try JSONDecoder().decode(TokenReply.self, from: Data(reply.text.utf8)).token)
        }
        let tokens = tokenList
        var setup = "kind: Service\nname: backend\nport: 8080\n"
        for index in 1...3 { setup += "---\nkind: Instance\nservice: backend\naddress: 10.9.0.\(index)\nport: 8080\n" }
        setup += "---\n" + Self.route(prefix: "/setup")
        try expect(try await admin.request(.POST, "/v1/apply", token: adminToken, body: setup, contentType: "application/yaml").get(), 200, "setup apply")
        try await Task.sleep(for: .milliseconds(500))
        print("rss_idle_mib=\(format(residentMiB(pid: serverPid)))")

        // 2. Registrations.
        let registrars = try await connect(concurrency, to: addresses, context: tls, group: group)
        var registered: [(service: Int, name: String)] = []
        for round in 1...max(1, registrationRounds) {
            let requests = (0..<registrations).map { index in
                (service: index % services, body: #"{"service":"svc-\#(index % services)","address":"10.0.\#(round).1","port":\#(20000 + index),"dependencies":["backend"]}"#)
            }
            let start = NIODeadline.now()
            let names = try await spread(requests, over: registrars) { connection, request in
                let reply = try await connection.request(.POST, "/v1/register", token: tokens[request.service], body: request.body).get()
                try expect(reply, 201, "register")
                return (service: request.service, name: try JSONDecoder().decode(RegisterReply.self, from: Data(reply.text.utf8)).name)
            }
            let seconds = Double((NIODeadline.now() - start).nanoseconds) / 1e9
            print("register round=\(round) count=\(registrations) seconds=\(format(seconds)) rate=\(format(Double(registrations) / seconds))")
            if round == 1 { print("rss_registered_first_mib=\(format(residentMiB(pid: serverPid)))") }
            if round == registrationRounds {
                registered = names
                break
            }
            let deregisterStart = NIODeadline.now()
            _ = try await spread(names, over: registrars) { connection, instance in
                let reply = try await connection.request(
                    .POST, "/v1/deregister", token: tokens[instance.service], body: #"{"name":"\#(instance.name)"}"#).get()
                try expect(reply, 200, "deregister")
                return 0
            }
            let deregisterSeconds = Double((NIODeadline.now() - deregisterStart).nanoseconds) / 1e9
            print("deregister round=\(round) count=\(registrations) seconds=\(format(deregisterSeconds)) rate=\(format(Double(registrations) / deregisterSeconds))")
        }
        for connection in registrars { connection.close() }
        try await Task.sleep(for: .milliseconds(500))
        print("rss_registered_mib=\(format(residentMiB(pid: serverPid)))")

        // 3. Watchers.
        let largest = sizes.max()!
        let connections = try await connect(largest, to: addresses, context: tls, group: group)
        let admins = try await connect(addresses.count, to: addresses, context: tls, group: group)
        let clock = RoundClock()
        let fleet = zip(connections, registered).map { connection, instance in
            Watcher(connection: connection, service: "svc-\(instance.service)", instance: instance.name, token: tokens[instance.service])
        }
        var latencyLines = ""
        var measuredFull = false
        var round = 0
        for pair in 0..<watchRounds {
            let order = pair % 2 == 0 ? sizes : sizes.reversed()
            for size in order {
                round += 1
                clock.reset()
                let armed = Array(fleet.prefix(size))
                let received = armed.map { $0.watch(clock) }
                try await waitForWatchers(size, admins: admins, token: adminToken)
                if size == largest, !measuredFull {
                    measuredFull = true
                    print("rss_watchers_mib=\(format(residentMiB(pid: serverPid))) watchers=\(size)")
                }
                let started = clock.start()
                // On a connection made for the watch phase: the setup one may have sat idle
                // through long registration rounds past the server's idle timeout.
                let applied = try await admins[0].request(
                    .POST, "/v1/apply", token: adminToken, body: Self.route(prefix: "/r\(round)"), contentType: "application/yaml"
                ).get()
                try expect(applied, 200, "apply")
                let applyMs = Double((applied.receivedAt - started).nanoseconds) / 1e6
                var times: [Double] = []
                for future in received { times.append(Double(try await future.get()) / 1e6) }
                times.sort()
                for time in times { latencyLines += "\(size)\t\(round)\t\(time)\n" }
                print(
                    "watch round=\(round) watchers=\(size) apply_ms=\(format(applyMs)) p50_ms=\(format(percentile(times, 0.5)))"
                        + " p99_ms=\(format(percentile(times, 0.99))) last_ms=\(format(times.last ?? .nan))")
            }
        }
        if let latencies {
            if let handle = FileHandle(forWritingAtPath: latencies) {
                handle.seekToEndOfFile()
                handle.write(Data(latencyLines.utf8))
                handle.closeFile()
            } else {
                try latencyLines.write(toFile: latencies, atomically: true, encoding: .utf8)
            }
        }
        for connection in connections { connection.close() }
        admin.close()
        for other in admins { other.close() }
        try await group.shutdownGracefully()
    }

    static func route(prefix: String) -> String {
        "kind: Route\nservice: backend\nrules: [ { match: { pathPrefix: \(prefix) }, backends: [ { subset: {}, weight: 100 } ] } ]\n"
    }

    /// Polls `/metrics` until the server holds `count` suspended watches.
    private func waitForWatchers(_ count: Int, admins: [APIConnection], token: String) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            var held = 0
            for admin in admins {
                let metrics = try await admin.request(.GET, "/metrics", token: token).get().text
                let line = metrics.split(separator: "\n").first { $0.hasPrefix("control_plane_watchers ") }
                held += line.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            }
            if held == count { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchClientError("the server never held \(count) watches")
    }

    /// `count` connections, the i-th to `addresses[i % n]` (replicas share the load).
    private func connect(_ count: Int, to addresses: [SocketAddress], context: TLSContext, group: any EventLoopGroup) async throws -> [APIConnection] {
        var connections: [APIConnection] = []
        // Batches, so the listen backlog is not overrun; the first request completes each handshake.
        var index = 0
        while index < count {
            let batch = min(100, count - index)
            let opened = try await EventLoopFuture.whenAllSucceed(
                (0..<batch).map { offset in
                    APIConnection.connect(to: addresses[(index + offset) % addresses.count], context: context, on: group.next())
                }, on: group.next()
            ).get()
            // A request completes each handshake: the sign-in page needs no token and costs the
            // server nothing (`/metrics` is computed over every instance: with 10,000 registered,
            // connecting at its pace let the first connections reach the server's idle timeout).
            for connection in opened {
                _ = try await connection.request(.GET, "/ui/login", token: nil).get()
            }
            connections += opened
            index += batch
        }
        return connections
    }

    /// Runs `items` over `connections`, each connection taking every n-th item in order.
    private func spread<Item: Sendable, Result: Sendable>(
        _ items: [Item], over connections: [APIConnection], _ body: @escaping @Sendable (APIConnection, Item) async throws -> Result
    ) async throws -> [Result] {
        try await withThrowingTaskGroup(of: [(Int, Result)].self) { tasks in
            for (lane, connection) in connections.enumerated() {
                tasks.addTask {
                    var results: [(Int, Result)] = []
                    for index in stride(from: lane, to: items.count, by: connections.count) {
                        results.append((index, try await body(connection, items[index])))
                    }
                    return results
                }
            }
            var all: [(Int, Result)] = []
            for try await part in tasks { all += part }
            return all.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}

private struct TokenReply: Decodable { var token: String }
private struct RegisterReply: Decodable { var name: String }

private func expect(_ reply: APIReply, _ status: Int, _ what: String) throws {
    guard reply.status == status else { throw BenchClientError("\(what): HTTP \(reply.status): \(reply.text)") }
}

func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

/// When the round's apply was written; nil while watchers are still being armed.
final class RoundClock: @unchecked Sendable {
    private let lock = NSLock()
    private var started: NIODeadline?

    func reset() { lock.withLock { started = nil } }
    func start() -> NIODeadline {
        let now = NIODeadline.now()
        lock.withLock { started = now }
        return now
    }
    var startedAt: NIODeadline? { lock.withLock { started } }
}

/// A sidecar's watch loop on one keep-alive connection. `known` is touched only on the
/// connection's event loop.
final class Watcher: @unchecked Sendable {
    let connection: APIConnection
    let service: String
    let instance: String
    let token: String
    private var known: Int64 = 0

    init(connection: APIConnection, service: String, instance: String, token: String) {
        self.connection = connection
        self.service = service
        self.instance = instance
        self.token = token
    }

    /// Long-polls until a snapshot newer than the one held arrives after `clock` started; the
    /// nanoseconds from the start to its last byte. Answers before the start (catching up to the
    /// current version) and 304s (watch timeout) re-poll at once.
    func watch(_ clock: RoundClock) -> EventLoopFuture<Int64> {
        let loop = connection.eventLoop
        return loop.flatSubmit {
            let done = loop.makePromise(of: Int64.self)
            self.poll(clock, done)
            return done.futureResult
        }
    }

    private func poll(_ clock: RoundClock, _ done: EventLoopPromise<Int64>) {
        connection.request(.GET, "/v1/snapshot/\(service)?version=\(known)&instance=\(instance)", token: token)
            .whenComplete { result in
                switch result {
                case .failure(let error):
                    done.fail(error)
                case .success(let reply) where reply.status == 304:
                    self.poll(clock, done)
                case .success(let reply):
                    guard reply.status == 200, let version = Self.version(reply.body) else {
                        done.fail(BenchClientError("watch \(self.instance): HTTP \(reply.status): \(reply.text.prefix(200))"))
                        return
                    }
                    let previous = self.known
                    self.known = version
                    if let started = clock.startedAt, version > previous, reply.receivedAt > started {
                        done.succeed((reply.receivedAt - started).nanoseconds)
                    } else {
                        self.poll(clock, done)
                    }
                }
            }
    }

    /// `"version":"N"` near the start of the snapshot JSON.
    static func version(_ body: ByteBuffer) -> Int64? {
        let head = String(buffer: body.getSlice(at: body.readerIndex, length: min(body.readableBytes, 256)) ?? body)
        guard let range = head.range(of: "\"version\":\"") else { return nil }
        return Int64(head[range.upperBound...].prefix { $0.isNumber })
    }
}
