import NIOCore
import NIOHTTP1

/// One answer of the admin server: status, content type and a complete body.
public struct AdminResponse: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: ByteBuffer
    /// Extra headers (`Allow` on a 405).
    public var headers: [(String, String)]

    public init(status: HTTPResponseStatus, contentType: String, body: ByteBuffer, headers: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    /// A `text/plain` answer of one line.
    public static func text(_ status: HTTPResponseStatus, _ line: String) -> AdminResponse {
        AdminResponse(status: status, contentType: "text/plain; charset=utf-8", body: ByteBuffer(string: line + "\n"))
    }

    public static func json(_ document: String) -> AdminResponse {
        json(.ok, document)
    }

    public static func json(_ status: HTTPResponseStatus, _ document: String) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: ByteBuffer(string: document))
    }
}
