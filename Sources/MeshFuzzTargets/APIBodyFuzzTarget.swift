import ControlPlane
import Foundation
import MeshAPI
import SidecarCore

/// The control-plane API's request parsing: every `APIMessages` body the router decodes
/// (`JSONDecoder`, as `APIRouter` does), the JSON form of `POST /v1/apply`
/// (`MeshResourceDecoder.decodeJSON`), and the request URI's path and query split. Each input
/// is tried as every body, the way a client may send any body to any route.
///
/// Properties: a body that decodes re-encodes to JSON that decodes to the same encoding; the
/// checks the control plane then makes on it (ttl, address and port, instance name) do not
/// trap; accepted apply resources round-trip and a sidecar can run with them.
enum APIBodyFuzzTarget {
    static func run(_ data: [UInt8]) {
        let body = Data(data)
        if let request = roundTrip(APIMessages.TokenRequest.self, body) {
            _ = request.ttl.flatMap { MeshDuration(parsing: $0) }
        }
        _ = roundTrip(APIMessages.CertificateRequest.self, body)
        if let request = roundTrip(APIMessages.RegisterRequest.self, body) {
            checkRegistration(request)
        }
        _ = roundTrip(APIMessages.HeartbeatRequest.self, body)
        _ = roundTrip(APIMessages.DeregisterRequest.self, body)

        let text = data.text
        if let resources = try? MeshResourceDecoder.decodeJSON(text) {
            ResourceRoundTrip.check(resources)
            RuntimeExercise.run(localService: "web", trustDomain: "mesh.local", resources: resources, loopCount: data.count % 8 + 1)
        }

        let request = APIRequest(method: "GET", uri: text, headers: [("authorization", text)], body: text, peerIdentity: nil)
        fuzzCheck(!request.path.contains("?"), "the path keeps a query: \(request.path)")
    }

    /// Decodes `body` as `T`; when it does, its encoding must decode and encode identically.
    private static func roundTrip<T: Codable>(_ type: T.Type, _ body: Data) -> T? {
        guard let value = try? JSONDecoder().decode(type, from: body) else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let first = try? encoder.encode(value) else {
            fuzzCheck(false, "a decoded \(T.self) cannot be encoded")
            return nil
        }
        guard let again = try? JSONDecoder().decode(type, from: first), let second = try? encoder.encode(again) else {
            fuzzCheck(false, "the encoding of a decoded \(T.self) is refused: \(String(decoding: first, as: UTF8.self))")
            return nil
        }
        fuzzCheck(first == second, "\(T.self) round trip changed: \(String(decoding: first, as: UTF8.self))")
        return value
    }

    /// What `MeshControlPlane.register` checks before it stores an instance.
    private static func checkRegistration(_ request: APIMessages.RegisterRequest) {
        guard (1...65535).contains(request.port) else { return }
        let address = HostPort(host: request.address, port: request.port)
        guard case .success(let parsed) = HostPort.parse(address.description) else { return }
        fuzzCheck(parsed == address, "\(address) parses back as \(parsed)")
        let instance = Instance(service: request.service, address: request.address, port: request.port, labels: request.labels ?? [:])
        fuzzCheck(!instance.name.isEmpty, "an instance without a name")
        fuzzCheck(instance.endpoint == address, "the instance endpoint differs from the registered address")
    }
}
