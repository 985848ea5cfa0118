/// The JSON bodies of the sidecar-facing and token routes (request and response shapes).
/// Shared by the server and `MeshAPIClient`, so both ends agree by construction.
public enum APIMessages {
    public struct TokenRequest: Codable, Sendable {
        public var service: String
        /// A duration such as `1h`; absent means no expiry.
        public var ttl: String?
        public init(service: String, ttl: String? = nil) { self.service = service; self.ttl = ttl }
    }

    public struct TokenResponse: Codable, Sendable {
        public var token: String
        public var service: String
        /// Unix seconds; absent when it never expires.
        public var expiresAt: Int64?

        public init(token: String, service: String, expiresAt: Int64? = nil) {
            self.token = token
            self.service = service
            self.expiresAt = expiresAt
        }
    }

    public struct CertificateRequest: Codable, Sendable {
        public var csr: String
        public init(csr: String) { self.csr = csr }
    }

    public struct CertificateResponse: Codable, Sendable {
        public var certificate: String
        public var bundle: String
        public var identity: String
        /// Unix seconds.
        public var expiresAt: Int64

        public init(certificate: String, bundle: String, identity: String, expiresAt: Int64) {
            self.certificate = certificate
            self.bundle = bundle
            self.identity = identity
            self.expiresAt = expiresAt
        }
    }

    public struct RegisterRequest: Codable, Sendable {
        public var service: String
        public var address: String
        public var port: Int
        public var labels: [String: String]?
        /// Services this instance calls; absent means all.
        public var dependencies: [String]?
        public init(service: String, address: String, port: Int, labels: [String: String]? = nil, dependencies: [String]? = nil) {
            self.service = service
            self.address = address
            self.port = port
            self.labels = labels
            self.dependencies = dependencies
        }
    }

    public struct RegisterResponse: Codable, Sendable {
        /// The instance name to send with heartbeats.
        public var name: String
        public var version: String
        /// Heartbeat at least this often (seconds).
        public var ttlSeconds: Double

        public init(name: String, version: String, ttlSeconds: Double) {
            self.name = name
            self.version = version
            self.ttlSeconds = ttlSeconds
        }
    }

    public struct HeartbeatRequest: Codable, Sendable {
        public var name: String
        /// The snapshot version the sidecar has applied.
        public var version: String?
        public init(name: String, version: String? = nil) { self.name = name; self.version = version }
    }

    public struct DeregisterRequest: Codable, Sendable {
        public var name: String
        public init(name: String) { self.name = name }
    }

    public struct ProxyStatus: Codable, Sendable {
        public var name: String
        public var service: String
        public var address: String
        public var port: Int
        public var health: String
        public var appliedVersion: String?
        public var currentVersion: String
        public var lastSeenSecondsAgo: Double
        public var stale: Bool

        public init(name: String, service: String, address: String, port: Int, health: String, appliedVersion: String? = nil, currentVersion: String, lastSeenSecondsAgo: Double, stale: Bool) {
            self.name = name
            self.service = service
            self.address = address
            self.port = port
            self.health = health
            self.appliedVersion = appliedVersion
            self.currentVersion = currentVersion
            self.lastSeenSecondsAgo = lastSeenSecondsAgo
            self.stale = stale
        }
    }

    public struct AppliedResource: Codable, Sendable {
        public var kind: String
        public var name: String
        public var resourceVersion: String

        public init(kind: String, name: String, resourceVersion: String) {
            self.kind = kind
            self.name = name
            self.resourceVersion = resourceVersion
        }
    }

    public struct ApplyResponse: Codable, Sendable {
        public var applied: [AppliedResource]

        public init(applied: [AppliedResource]) {
            self.applied = applied
        }
    }
}
