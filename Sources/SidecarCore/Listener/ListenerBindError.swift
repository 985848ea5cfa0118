import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A listening socket that could not be opened, said the way an operator fixes it: the address
/// and the setting it came from, then why (`cannot listen on 127.0.0.1:15001 (outbound.listen):
/// address already in use`). NIO's own error names neither (`bind(descriptor:ptr:bytes:):
/// Address already in use (errno: 98)`).
public struct ListenerBindError: Error, CustomStringConvertible, Sendable {
    /// The address as configured, e.g. `127.0.0.1:15001`.
    public let address: String
    /// Where it was configured: a config key (`outbound.listen`) or a flag (`--listen`).
    public let key: String
    /// Why, in a few words: `address already in use`, `permission denied`.
    public let reason: String

    public init(address: String, key: String, reason: String) {
        self.address = address
        self.key = key
        self.reason = reason
    }

    public var description: String { "cannot listen on \(address) (\(key)): \(reason)" }

    /// Runs `bind`, turning its failure into a `ListenerBindError` for `address` and `key`.
    public static func binding<Result>(
        _ address: HostPort, key: String, _ bind: () async throws -> Result
    ) async throws -> Result {
        do {
            return try await bind()
        } catch let error as IOError {
            throw ListenerBindError(address: address.description, key: key, reason: reason(errno: error.errnoCode))
        } catch let error as SocketAddressError {
            throw ListenerBindError(address: address.description, key: key, reason: "cannot resolve the host (\(error))")
        }
    }

    /// `strerror` in lower case: `address already in use`.
    static func reason(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text).lowercased()
    }
}
