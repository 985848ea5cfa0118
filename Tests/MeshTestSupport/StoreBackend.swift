import ControlPlane
import Foundation
import Testing

/// The two `ResourceStore` backends, for suites that run the same tests over both
/// (`@Test(arguments: StoreBackend.available)`), so SQLite and etcd are held to one behaviour.
public enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case etcd

    public var testDescription: String { rawValue }

    /// Both when etcd is installed; SQLite alone otherwise (`EtcdCluster.missing` says why).
    public static var available: [StoreBackend] { EtcdCluster.binary == nil ? [.sqlite] : allCases }

    /// A store: the SQLite file in `directory`, or the key prefix `etcdPrefix` (a fresh one
    /// when nil) of the suite's shared etcd cluster (the suite carries `.sharedEtcdCluster`).
    /// Two made with the same directory and prefix share their data, as two processes would.
    /// Stop it with `close`.
    public func makeStore(
        in directory: TemporaryDirectory, etcdPrefix: String? = nil, registrationTTL: Duration = .seconds(15),
        registrationGrace: Duration = .seconds(60)
    ) async throws -> any ResourceStore {
        switch self {
        case .sqlite:
            return try SQLiteResourceStore(path: directory.path + "/mesh.sqlite")
        case .etcd:
            guard let cluster = EtcdCluster.shared else {
                throw EtcdClusterError("an etcd store needs the suite to carry .sharedEtcdCluster")
            }
            let client = try EtcdClient(endpoints: try EtcdClient.parseEndpoints(cluster.endpoints), tls: cluster.tls?.clientFiles)
            return try await EtcdResourceStore(
                client: client, prefix: etcdPrefix ?? Self.freshPrefix(), registrationTTL: registrationTTL,
                registrationGrace: registrationGrace)
        }
    }

    public static func freshPrefix() -> String { "/test-\(UUID().uuidString.prefix(12))" }

    /// Ends what `makeStore` started (an etcd store's watch); SQLite needs nothing.
    public static func close(_ store: any ResourceStore) {
        (store as? EtcdResourceStore)?.stop()
    }
}
