import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A plain HTTP/1.1 client of Prometheus' query API (`GET /api/v1/query?query=…`): one
/// connection per query, a bounded wait, and errors that name the URL. Enough for `stat`'s
/// handful of instant queries; no TLS (Prometheus beside the mesh listens on plain HTTP).
public struct PrometheusClient: Sendable {
    /// `http://host:port` with an optional path prefix (`--web.route-prefix`).
    public let url: String
    let host: String
    let port: Int
    let pathPrefix: String
    let timeout: TimeAmount

    public init(url: String, timeout: TimeAmount = .seconds(10)) throws(MeshStatError) {
        guard let components = URLComponents(string: url), components.scheme == "http",
            let host = components.host, !host.isEmpty
        else {
            throw MeshStatError("--prometheus \"\(url)\" is not an http://host:port URL")
        }
        self.url = url
        self.host = host
        self.port = components.port ?? 80
        let path = components.path
        pathPrefix = path.hasSuffix("/") ? String(path.dropLast()) : path
        self.timeout = timeout
    }

    /// The request target of an instant query, evaluated at `time` (Unix seconds) when given.
    public func target(for promQL: String, at time: Double? = nil) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&+=?#;")
        let encoded = promQL.addingPercentEncoding(withAllowedCharacters: allowed) ?? promQL
        let at = time.map { "&time=" + String(format: "%.3f", $0) } ?? ""
        return "\(pathPrefix)/api/v1/query?query=\(encoded)\(at)"
    }

    /// Runs one instant query (at `time`, Unix seconds, or Prometheus' now).
    public func query(_ promQL: String, at time: Double? = nil) async throws(MeshStatError) -> PrometheusVector {
        let (status, body) = try await get(target(for: promQL, at: time))
        // The query API answers errors as JSON with 400/422/503; anything else is not Prometheus.
        guard status == 200 || body.hasPrefix("{") else {
            throw MeshStatError("Prometheus at \(url) answered \(status) to \(target(for: promQL, at: time)): \(body.prefix(200))")
        }
        return try PrometheusVector(json: body)
    }

    /// Runs every query, all at once and all at the same evaluation instant: a ratio of two of
    /// them (a success rate) compares rates over the same window, not windows a few
    /// milliseconds apart that `rate()` extrapolates differently.
    public func answers(_ queries: [MeshStatQuery]) async throws(MeshStatError) -> [MeshStatQuery: PrometheusVector] {
        let time = Date().timeIntervalSince1970
        do {
            return try await withThrowingTaskGroup(of: (MeshStatQuery, PrometheusVector).self) { group in
                for query in queries {
                    group.addTask { (query, try await self.query(query.promQL, at: time)) }
                }
                var answers: [MeshStatQuery: PrometheusVector] = [:]
                for try await (query, vector) in group { answers[query] = vector }
                return answers
            }
        } catch let error as MeshStatError {
            throw error
        } catch {
            throw MeshStatError("querying Prometheus at \(url): \(error)")
        }
    }

    func get(_ target: String) async throws(MeshStatError) -> (status: Int, body: String) {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let promise = loop.makePromise(of: (Int, String).self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw MeshStatError("cannot reach Prometheus at \(url): \(Self.describe(error)) (is it running? pass --prometheus URL)")
        }
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(host):\(port)")
        headers.add(name: "accept", value: "application/json")
        headers.add(name: "connection", value: "close")
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: headers)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let url = url, timeout = timeout
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(MeshStatError("Prometheus at \(url) did not answer within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        do {
            let (status, body) = try await promise.futureResult.get()
            return (status, body)
        } catch let error as MeshStatError {
            throw error
        } catch {
            throw MeshStatError("reading Prometheus' answer from \(url): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return "\(error.description)" }
        return "\(error)"
    }

    /// Collects status and body; completes the promise at the end, or fails it on close.
    private final class ResponseCollector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<(Int, String)>
        var status = 0
        var body = ByteBuffer()
        var done = false

        init(promise: EventLoopPromise<(Int, String)>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): status = Int(head.status.code)
            case .body(var part): body.writeBuffer(&part)
            case .end:
                done = true
                promise.succeed((status, String(buffer: body)))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !done {
                done = true
                promise.fail(MeshStatError("the connection closed before a full answer"))
            }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if !done {
                done = true
                promise.fail(error)
            }
            context.close(promise: nil)
        }
    }
}
