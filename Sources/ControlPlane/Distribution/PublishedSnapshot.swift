import MeshAPI
import NIOCore

/// One service's snapshot at one version in its wire form: the JSON body (with its trailing
/// newline) encoded once and then shared by the response of every watcher of that service. A
/// `ByteBuffer`'s storage is reference-counted, so a thousand responses retain one buffer
/// instead of copying a thousand bodies. Immutable.
public struct PublishedSnapshot: Sendable, Equatable {
    public let service: String
    public let version: Int64
    public let body: ByteBuffer

    public init(_ snapshot: MeshSnapshot) {
        self.init(service: snapshot.service, version: snapshot.version, body: ByteBuffer(string: snapshot.json + "\n"))
    }

    public init(service: String, version: Int64, body: ByteBuffer) {
        self.service = service
        self.version = version
        self.body = body
    }
}
