import NIOCore
import NIOHTTP1
import SidecarCore

/// The last handler of an API connection: carries out `APIConnectionStateMachine`'s actions.
/// The head goes to `APIRouter.admit` first (off the event loop, reads held), so an
/// unauthenticated or unroutable request is answered before a byte of its body is kept; an
/// admitted body is gathered within `maxBodySize`, the server-wide body budget and the body
/// deadline; then `APIRouter.respond` answers it off the event loop.
///
/// Learns the client's verified SPIFFE ID from `TLSEvent.handshakeCompleted`. One request at a
/// time per connection (NIO's pipelining assistance holds the next one back). Duplex only to
/// hold `read` while the router decides about a head.
final class APIServerHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    struct Configuration: Sendable {
        var limits: APIConnectionStateMachine.Limits
        /// From the head to the end of the body.
        var bodyTimeout: TimeAmount
        /// How long a refused request's rest is read and dropped before closing anyway.
        var drainTimeout: TimeAmount
    }

    private let router: APIRouter
    private let configuration: Configuration
    /// Bytes of bodies held by every connection of the server together.
    private let bodyBudget: SharedAllowance
    private var machine: APIConnectionStateMachine
    private var peerIdentity: SPIFFEID?

    private var request: APIRequest?
    private var keepAlive = true
    private var version = HTTPVersion.http1_1
    private var admission: (route: APIRouter.Route, principal: MeshControlPlane.Principal?)?
    private var refusedByRouter: APIResponse?
    private var body = ByteBuffer()
    /// What this connection holds of `bodyBudget`.
    private var reserved = 0
    private var bodyDeadline: Scheduled<Void>?
    private var drainDeadline: Scheduled<Void>?
    /// A `read` that came while reads were held.
    private var readPending = false
    /// The admission or the answer being worked out off the event loop; cancelled if the client goes away.
    private var inFlight: Task<Void, Never>?

    init(router: APIRouter, configuration: Configuration, bodyBudget: SharedAllowance) {
        self.router = router
        self.configuration = configuration
        self.bodyBudget = bodyBudget
        self.machine = APIConnectionStateMachine(limits: configuration.limits)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent {
            peerIdentity = info.peerIdentity
        }
        // A connection that sends nothing for the idle timeout is closed, unless we owe it an
        // answer (a long-poll watch is quiet on purpose).
        if case .read = event as? IdleStateHandler.IdleStateEvent {
            if case .responding = machine.state { return }
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = APIRequest(
                method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: "",
                peerIdentity: peerIdentity)
            keepAlive = head.isKeepAlive
            version = head.version
            let declared = head.headers.first(name: "content-length").flatMap(Int.init)
            perform(machine.head(declaredLength: declared), context: context)
        case .body(var chunk):
            let count = chunk.readableBytes
            let took = wantsBody && bodyBudget.take(count)
            let action = machine.body(count: count, reserved: took)
            if action == .keepBody {
                reserved += count
                body.writeBuffer(&chunk)
            } else if took {
                bodyBudget.give(count)
            }
            perform(action, context: context)
        case .end:
            perform(machine.end(), context: context)
        }
    }

    private var wantsBody: Bool {
        switch machine.state {
        case .admitting, .receiving: true
        case .idle, .responding, .draining, .closing, .closed: false
        }
    }

    func read(context: ChannelHandlerContext) {
        if machine.holdsReads {
            readPending = true
        } else {
            context.read()
        }
    }

    private func perform(_ action: APIConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none, .keepBody, .dropBody:
            break
        case .admit:
            armBodyDeadline(context: context)
            admit(context: context)
        case .readBody:
            break
        case .dispatch:
            bodyDeadline?.cancel()
            dispatch(context: context)
        case .refuse(let refusal, let drain):
            bodyDeadline?.cancel()
            refuse(refusal, drain: drain, context: context)
        case .close:
            context.close(promise: nil)
        }
        if readPending, !machine.holdsReads {
            readPending = false
            context.read()
        }
    }

    // MARK: Steps

    private func admit(context: ChannelHandlerContext) {
        guard let request else { return }
        let router = router
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        inFlight = Task {
            let admission = router.admit(request)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.admitted(admission, context: context)
            }
        }
    }

    private func admitted(_ admission: APIRouter.Admission, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        switch admission {
        case .accepted(let route, let principal):
            self.admission = (route, principal)
            perform(machine.admitted(true), context: context)
        case .refused(let response):
            refusedByRouter = response
            perform(machine.admitted(false), context: context)
        }
    }

    private func dispatch(context: ChannelHandlerContext) {
        guard var request, let (route, principal) = admission else { return }
        request.body = String(buffer: body)
        body = ByteBuffer()
        let router = router
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        inFlight = Task {
            let response = await router.respond(to: request, route: route, principal: principal)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.answered(response, context: context)
            }
        }
    }

    private func answered(_ response: APIResponse, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        releaseBody()
        inFlight = nil
        admission = nil
        // The state moves before the write: the write of `.end` may hand us the next head.
        let close = machine.responseSent(keepAlive: keepAlive) == .close
        write(response, context: context, closeAfterwards: close)
    }

    private func refuse(_ refusal: APIConnectionStateMachine.Refusal, drain: Bool, context: ChannelHandlerContext) {
        releaseBody()
        let route = admission?.route.template ?? "unadmitted"
        let response: APIResponse
        switch refusal {
        case .notAdmitted:
            response = refusedByRouter ?? APIResponse(APIError.unauthorized())
        case .tooLarge:
            response = router.refusal(route: route, APIError(413, "request body larger than \(configuration.limits.maxBodySize) bytes"))
        case .tooSlow:
            response = router.refusal(route: route, APIError(408, "the request body did not arrive within \(Self.describe(configuration.bodyTimeout))"))
        case .busy:
            response = router.refusal(route: route, APIError(503, "too many request bodies in flight; try again"))
        }
        write(response, context: context, closeAfterwards: !drain, connectionClose: true)
        guard drain else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        drainDeadline = context.eventLoop.scheduleTask(in: configuration.drainTimeout) {
            let (handler, context) = loopBound.value
            handler.perform(handler.machine.drainDeadlinePassed(), context: context)
        }
    }

    private func armBodyDeadline(context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        bodyDeadline = context.eventLoop.scheduleTask(in: configuration.bodyTimeout) {
            let (handler, context) = loopBound.value
            handler.perform(handler.machine.bodyDeadlinePassed(), context: context)
        }
    }

    private func releaseBody() {
        bodyBudget.give(reserved)
        reserved = 0
        body = ByteBuffer()
    }

    /// - Parameters:
    ///   - closeAfterwards: close once the response is written (announces `connection: close`).
    ///   - connectionClose: announce `connection: close`.
    private func write(
        _ response: APIResponse, context: ChannelHandlerContext, closeAfterwards: Bool, connectionClose: Bool = false
    ) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders()
        let body = response.bytes
        headers.add(name: "content-type", value: response.contentType)
        headers.add(name: "content-length", value: String(body.readableBytes))
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        if closeAfterwards || connectionClose { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if closeAfterwards {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.futureResult.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        machine.closed()
        inFlight?.cancel()
        inFlight = nil
        bodyDeadline?.cancel()
        drainDeadline?.cancel()
        releaseBody()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private static func describe(_ amount: TimeAmount) -> String {
        let milliseconds = amount.nanoseconds / 1_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000)s" : "\(milliseconds)ms"
    }
}
