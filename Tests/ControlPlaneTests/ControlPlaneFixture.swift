import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore

/// A control plane over a fresh SQLite store in a temporary directory, with a fresh CA.
struct ControlPlaneFixture {
    static let adminToken = "admin-secret"
    let directory = TemporaryDirectory()
    let store: SQLiteResourceStore
    let controlPlane: MeshControlPlane
    let router: APIRouter
    let authority: CertificateAuthority

    init(settings: RegistryStateMachine.Settings = .init(), watchTimeout: Duration = .seconds(30)) throws {
        store = try SQLiteResourceStore(path: directory.path + "/mesh.sqlite")
        authority = try CertificateAuthority.create(trustDomain: "mesh.local")
        controlPlane = try MeshControlPlane(
            store: store, authority: authority, adminToken: Self.adminToken, registrySettings: settings)
        router = APIRouter(controlPlane: controlPlane, watchTimeout: watchTimeout)
    }

    func request(
        _ method: String, _ uri: String, body: String = "", token: String? = ControlPlaneFixture.adminToken,
        peer: SPIFFEID? = nil, contentType: String? = nil
    ) async -> APIResponse {
        var headers: [(String, String)] = []
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        if let contentType { headers.append(("Content-Type", contentType)) }
        return await router.handle(APIRequest(method: method, uri: uri, headers: headers, body: body, peerIdentity: peer))
    }

    func remove() { directory.remove() }
}

/// The JSON object of a response body.
func jsonObject(_ body: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
}
