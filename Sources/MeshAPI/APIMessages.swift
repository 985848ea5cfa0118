/// The JSON bodies of the sidecar-facing and token routes (request and response shapes).
/// Shared by the server and `MeshAPIClient`, so both ends agree by construction.
public enum APIMessages {
    public struct TokenRequest: Codable, Sendable {
        public var service: String
        /// A duration such as `1h`; absent means the default (24 h).
        public var ttl: String?
        /// How many certificates the token may be exchanged for; absent means no limit.
        public var uses: Int?
        public init(service: String, ttl: String? = nil, uses: Int? = nil) {
            self.service = service
            self.ttl = ttl
            self.uses = uses
        }
    }

    public struct TokenResponse: Codable, Sendable {
        /// The secret: shown once, never stored by the control plane (only its hash).
        public var token: String
        /// The public id that `token list` shows and `token revoke` takes.
        public var id: String?
        public var service: String
        /// Unix seconds.
        public var expiresAt: Int64?
        /// Absent: no limit.
        public var usesLeft: Int?

        public init(token: String, id: String? = nil, service: String, expiresAt: Int64? = nil, usesLeft: Int? = nil) {
            self.token = token
            self.id = id
            self.service = service
            self.expiresAt = expiresAt
            self.usesLeft = usesLeft
        }
    }

    /// One row of `GET /v1/tokens` (`token list -o json`): never the secret.
    public struct TokenStatus: Codable, Sendable, Equatable {
        public var id: String
        public var service: String
        /// RFC 3339, UTC (`2026-12-05T20:42:53Z`).
        public var expires: String
        /// null: no limit.
        public var usesLeft: Int?
        /// `active`, `expired`, `revoked` or `used-up`.
        public var state: String

        public init(id: String, service: String, expires: String, usesLeft: Int?, state: String) {
            self.id = id
            self.service = service
            self.expires = expires
            self.usesLeft = usesLeft
            self.state = state
        }

        private enum CodingKeys: String, CodingKey { case id, service, expires, usesLeft, state }

        /// Writes `usesLeft` even when it is null, so every row has the same fields.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            try container.encode(service, forKey: .service)
            try container.encode(expires, forKey: .expires)
            try container.encode(usesLeft, forKey: .usesLeft)
            try container.encode(state, forKey: .state)
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
        /// The newest snapshot version the sidecar refused (it keeps serving `version`), and
        /// why; absent when it applied the newest one it received.
        public var rejectedVersion: String?
        public var rejectedReason: String?
        /// The notAfter of the certificate the sidecar serves with (Unix seconds), so the
        /// control plane knows every proxy's expiry without Prometheus; absent from sidecars
        /// older than this field (their heartbeats are accepted as before).
        public var certificateExpiresAt: Int64?

        public init(
            name: String, version: String? = nil, rejectedVersion: String? = nil, rejectedReason: String? = nil,
            certificateExpiresAt: Int64? = nil
        ) {
            self.name = name
            self.version = version
            self.rejectedVersion = rejectedVersion
            self.rejectedReason = rejectedReason
            self.certificateExpiresAt = certificateExpiresAt
        }
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
        /// The newest snapshot version the proxy refused, and why (from its heartbeat).
        public var rejectedVersion: String?
        public var rejectedReason: String?
        /// The notAfter of the proxy's certificate (Unix seconds), from its last heartbeat;
        /// nil until it sent one carrying it.
        public var certificateExpiresAt: Int64?

        public init(
            name: String, service: String, address: String, port: Int, health: String, appliedVersion: String? = nil,
            currentVersion: String, lastSeenSecondsAgo: Double, stale: Bool, rejectedVersion: String? = nil,
            rejectedReason: String? = nil, certificateExpiresAt: Int64? = nil
        ) {
            self.certificateExpiresAt = certificateExpiresAt
            self.rejectedVersion = rejectedVersion
            self.rejectedReason = rejectedReason
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
