import Foundation
import Synchronization

/// A port of 127.0.0.1 held by a plain listening socket, as another program would hold it: for
/// tests of what a user sees when a port is already taken. `release()` closes it (so does
/// deinit).
public final class TakenPort: Sendable {
    public let port: Int
    private let descriptor: Mutex<Int32>

    /// Listens on `port`, or on a free one (`freeLoopbackPort()`).
    public init(port: Int? = nil) throws {
        let port = try port ?? freeLoopbackPort()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound, listen(fd, 8) == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EADDRINUSE)
        }
        self.port = port
        descriptor = Mutex(fd)
    }

    public func release() {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    deinit { release() }
}
