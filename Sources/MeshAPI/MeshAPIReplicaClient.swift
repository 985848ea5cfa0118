#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import SidecarCore

/// The operator CLI's client of a control plane run as several replicas (`--server
/// https://a:15010,https://b:15010`, or `MESH_SERVER` likewise): each request goes to the
/// replicas in the order given until one answers. A replica that answers with an error status
/// is an answer (replicas share one store, so another would say the same); only an
/// unreachable one, or one that fails mid-request, moves the request on.
public struct MeshAPIReplicaClient: Sendable {
    public let replicas: [MeshAPIClient]

    /// `servers`: one `https://host:port` or several, comma-separated.
    public init(
        servers: String, caPEM: String, token: String?, trustDomain: String = SPIFFEID.defaultTrustDomain
    ) throws(MeshAPIClientError) {
        let urls = servers.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !urls.isEmpty else { throw MeshAPIClientError("no control plane URL given") }
        replicas = try urls.map { url throws(MeshAPIClientError) in
            try MeshAPIClient(server: url, caPEM: caPEM, token: token, trustDomain: trustDomain)
        }
    }

    public func send(
        _ method: HTTPMethod, _ path: String, body: String? = nil, contentType: String = "application/json",
        timeout: TimeAmount = .seconds(60)
    ) async throws(MeshAPIClientError) -> MeshAPIClient.Response {
        var failures: [String] = []
        for replica in replicas {
            do {
                return try await replica.send(method, path, body: body, contentType: contentType, timeout: timeout)
            } catch {
                if case .wrongServerIdentity = error.kind { throw error }
                failures.append(error.description)
            }
        }
        throw MeshAPIClientError(failures.count == 1 ? failures[0] : "no control plane replica answered: " + failures.joined(separator: "; "))
    }
}
