#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MeshAPI
import NIOCore
import NIOHTTP1
import SidecarCore
import Synchronization

/// The calls a sidecar makes to the control plane (certificate, register, heartbeat, watch,
/// deregister), typed: each answers a decoded message or a `ControlPlaneCallError` that says
/// whether trying again can help. Authenticates with the join token until the sidecar has a
/// certificate, then with mTLS. Off the request path: Foundation's JSON coding is fine here.
struct SidecarAPIClient: Sendable {
    /// One client per control-plane replica, in the configured order.
    let clients: [MeshAPIClient]
    let replica: ReplicaCursor
    let service: String

    /// With the join token (bootstrap) or with the workload certificate (everything after).
    init(
        credentials: ControlPlaneSession.Credentials, service: String,
        certificate: (certificatePEM: String, keyPEM: String)? = nil
    ) throws {
        do {
            clients = try credentials.addresses.map { address throws(MeshAPIClientError) in
                try MeshAPIClient(
                    server: address, caPEM: credentials.caPEM,
                    token: certificate == nil ? credentials.token : nil, clientCertificate: certificate,
                    trustDomain: credentials.trustDomain, group: credentials.group, keepAlive: true)
            }
        } catch {
            throw Sidecar.StartupError(description: "controlPlane: \(error.description)")
        }
        replica = credentials.replica
        self.service = service
    }

    func issueCertificate(csrPEM: String) async throws(ControlPlaneCallError) -> APIMessages.CertificateResponse {
        try await call(.POST, "/v1/certificates", APIMessages.CertificateRequest(csr: csrPEM), expect: 201)
    }

    func register(_ request: APIMessages.RegisterRequest) async throws(ControlPlaneCallError) -> APIMessages.RegisterResponse {
        try await call(.POST, "/v1/register", request, expect: 201)
    }

    /// Reports the version applied and, when the newest one was refused, its version and reason.
    func heartbeat(
        name: String, appliedVersion: Int64?, rejection: SnapshotRejection? = nil, certificateExpiresAt: Int64? = nil
    ) async throws(ControlPlaneCallError) {
        let request = APIMessages.HeartbeatRequest(
            name: name, version: appliedVersion.map(String.init),
            rejectedVersion: rejection.map { String($0.version) }, rejectedReason: rejection?.reason,
            certificateExpiresAt: certificateExpiresAt)
        let _: Acknowledgement = try await call(.POST, "/v1/heartbeat", request, expect: 200)
    }

    func deregister(name: String) async throws(ControlPlaneCallError) {
        let _: Acknowledgement = try await call(
            .POST, "/v1/deregister", APIMessages.DeregisterRequest(name: name), expect: 200, timeout: .seconds(2))
    }

    /// The snapshot at once when `knownVersion` is not current, else at the next change; nil
    /// when the control plane's long-poll ran out without one. `rejectedVersion` (a snapshot
    /// this sidecar refused) makes the control plane wait for a version after it too. A body
    /// that does not decode throws `.rejected` with the reason.
    func snapshot(
        knownVersion: Int64?, instance: String?, rejectedVersion: Int64? = nil
    ) async throws(ControlPlaneCallError) -> MeshSnapshot? {
        var query: [String] = []
        if let knownVersion { query.append("version=\(knownVersion)") }
        if let rejectedVersion { query.append("rejected=\(rejectedVersion)") }
        if let instance { query.append("instance=\(Self.percentEncoded(instance))") }
        let path = "/v1/snapshot/\(Self.percentEncoded(service))" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        let response = try await send(.GET, path, body: nil, timeout: .seconds(75))
        switch response.status {
        case 304:
            return nil
        case 200:
            do {
                return try MeshSnapshot.decode(json: response.body)
            } catch {
                throw ControlPlaneCallError(
                    .invalidAnswer, "the snapshot cannot be applied: \(error.description)",
                    rejection: SnapshotRejection(version: Self.version(ofUnreadable: response.body) ?? -1, reason: error.description))
            }
        default:
            throw ControlPlaneCallError(status: response.status, path: "/v1/snapshot", body: response.body)
        }
    }

    private struct Acknowledgement: Decodable {}

    private func call<Request: Encodable, Answer: Decodable>(
        _ method: HTTPMethod, _ path: String, _ request: Request, expect: Int, timeout: TimeAmount = .seconds(15)
    ) async throws(ControlPlaneCallError) -> Answer {
        let body: String
        do {
            body = String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
        } catch {
            throw ControlPlaneCallError(.invalidAnswer, "cannot encode \(Request.self): \(error)")
        }
        let response = try await send(method, path, body: body, timeout: timeout)
        guard response.status == expect else {
            throw ControlPlaneCallError(status: response.status, path: path, body: response.body)
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(response.body.utf8))
        } catch {
            throw ControlPlaneCallError(.invalidAnswer, "\(path) answered a body this sidecar cannot read: \(response.body.prefix(200))")
        }
    }

    /// Sends to the current replica; one that cannot be reached (refused, reset, killed
    /// mid-watch) makes the call go to the next one at once, each replica tried once per call,
    /// and the next calls stay with the one that answered. The agent's jittered backoff spaces
    /// out rounds in which none answered.
    private func send(_ method: HTTPMethod, _ path: String, body: String?, timeout: TimeAmount) async throws(ControlPlaneCallError) -> MeshAPIClient.Response {
        let start = replica.index(of: clients.count)
        var failures: [String] = []
        for offset in 0..<clients.count {
            let index = (start + offset) % clients.count
            do {
                let response = try await clients[index].send(method, path, body: body, timeout: timeout)
                replica.settle(on: index, from: start)
                return response
            } catch {
                if case .wrongServerIdentity = error.kind { throw ControlPlaneCallError(.wrongServer, error.description) }
                if Task.isCancelled { throw ControlPlaneCallError(.unreachable, error.description) }
                failures.append(error.description)
            }
        }
        replica.settle(on: (start + 1) % clients.count, from: start)
        throw ControlPlaneCallError(.unreachable, failures.joined(separator: "; "))
    }

    /// The `version` of a snapshot body that does not decode as a whole, to report which one
    /// was refused.
    private static func version(ofUnreadable body: String) -> Int64? {
        struct Versioned: Decodable { var version: String? }
        return (try? JSONDecoder().decode(Versioned.self, from: Data(body.utf8)))?.version.flatMap { Int64($0) }
    }

    /// A query value: what `.urlQueryAllowed` keeps except `&=?/`, every other byte as `%XX`.
    private static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case _ where "-._~!$'()*+,;:@".utf8.contains(byte):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0x0F)])
            }
        }
        return out
    }
}

/// Why a control-plane call failed, and so what the sidecar does next: try again later
/// (unreachable, a 5xx), register again (`notRegistered`), or give up with the server's
/// own words (a refused token, a request it calls invalid).
struct ControlPlaneCallError: Error, CustomStringConvertible {
    enum Kind: Equatable {
        /// No connection, a timeout, a 5xx: the control plane may come back.
        case unreachable
        /// 401/403: the token or certificate is not accepted.
        case refused
        /// 404 on heartbeat: the control plane forgot this instance (expired, restarted).
        case notRegistered
        /// A 4xx the sidecar caused, or an answer it cannot read.
        case invalidAnswer
        /// The server is not `spiffe://<td>/control-plane` (a workload's certificate from the
        /// same CA, say): a wrong address or an impostor, which waiting does not fix.
        case wrongServer
    }

    let kind: Kind
    let description: String
    /// A snapshot that arrived but cannot be applied (it does not decode): refused, reported.
    let rejection: SnapshotRejection?

    init(_ kind: Kind, _ description: String, rejection: SnapshotRejection? = nil) {
        self.kind = kind
        self.description = description
        self.rejection = rejection
    }

    init(status: Int, path: String, body: String) {
        let message = Self.errorMessage(body) ?? "HTTP \(status)"
        switch status {
        case 401, 403: self.init(.refused, "\(path): \(status) \(message)")
        case 404: self.init(.notRegistered, "\(path): 404 \(message)")
        case 500...: self.init(.unreachable, "\(path): \(status) \(message)")
        default: self.init(.invalidAnswer, "\(path): \(status) \(message)")
        }
    }

    var isRetryable: Bool { kind == .unreachable }

    /// The `error` field of the control plane's `{"error": "..."}` bodies.
    private static func errorMessage(_ body: String) -> String? {
        struct ErrorBody: Decodable { var error: String? }
        return (try? JSONDecoder().decode(ErrorBody.self, from: Data(body.utf8)))?.error
    }
}

/// The index of the control-plane replica a sidecar talks to now, shared by all its clients.
final class ReplicaCursor: Sendable {
    private let current = Mutex(0)

    func index(of count: Int) -> Int {
        current.withLock { $0 } % max(count, 1)
    }

    /// Moves to `index` unless another call already moved away from `start` meanwhile.
    func settle(on index: Int, from start: Int) {
        current.withLock { value in
            if value == start || value == index { value = index }
        }
    }
}
