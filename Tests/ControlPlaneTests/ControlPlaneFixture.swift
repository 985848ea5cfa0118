import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore

/// A control plane over a fresh store (SQLite in a temporary directory, or a fresh prefix of
/// the suite's shared etcd cluster), with a fresh CA.
struct ControlPlaneFixture {
    static let adminToken = "admin-secret"
    let directory: TemporaryDirectory
    let store: any ResourceStore
    let controlPlane: MeshControlPlane
    let router: APIRouter
    let authority: CertificateAuthority
    /// The store's version before the test did anything (0 for SQLite; an etcd store starts at
    /// the cluster's revision).
    let initialVersion: Int64

    /// Over SQLite.
    init(settings: RegistryStateMachine.Settings = .init(), watchTimeout: Duration = .seconds(30)) throws {
        let directory = TemporaryDirectory()
        try self.init(
            directory: directory, store: try SQLiteResourceStore(path: directory.path + "/mesh.sqlite"), settings: settings,
            watchTimeout: watchTimeout)
    }

    /// Over `backend` (etcd: the suite carries `.sharedEtcdCluster`).
    init(_ backend: StoreBackend, settings: RegistryStateMachine.Settings = .init(), watchTimeout: Duration = .seconds(30)) async throws {
        let directory = TemporaryDirectory()
        try self.init(
            directory: directory, store: try await backend.makeStore(in: directory), settings: settings, watchTimeout: watchTimeout)
    }

    private init(
        directory: TemporaryDirectory, store: any ResourceStore, settings: RegistryStateMachine.Settings, watchTimeout: Duration
    ) throws {
        self.directory = directory
        self.store = store
        initialVersion = try store.currentVersion()
        authority = try CertificateAuthority.create(trustDomain: "mesh.local")
        controlPlane = try MeshControlPlane(
            store: store, authority: authority, adminToken: Self.adminToken, registrySettings: settings)
        router = APIRouter(controlPlane: controlPlane, watchTimeout: watchTimeout)
    }

    /// The store's version now, as the API shows it.
    var version: String { (try? store.currentVersion()).map(String.init) ?? "?" }

    func request(
        _ method: String, _ uri: String, body: String = "", token: String? = ControlPlaneFixture.adminToken,
        peer: SPIFFEID? = nil, contentType: String? = nil
    ) async -> APIResponse {
        var headers: [(String, String)] = []
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        if let contentType { headers.append(("Content-Type", contentType)) }
        return await router.handle(APIRequest(method: method, uri: uri, headers: headers, body: body, peerIdentity: peer))
    }

    func remove() {
        StoreBackend.close(store)
        directory.remove()
    }
}

/// The JSON object of a response body.
func jsonObject(_ body: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
}
