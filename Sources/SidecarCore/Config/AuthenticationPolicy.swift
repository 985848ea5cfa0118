/// An `AuthenticationPolicy`: how the gateway checks who calls a rule that names it (`auth:`).
/// JWT (ES256 or RS256 against a JWKS, with `iss`, `aud`, `exp`, `nbf` checked), API keys
/// (kept only as SHA-256 hashes), or both: a request passes with either.
public struct AuthenticationPolicy: Sendable, Equatable {
    public struct JWT: Sendable, Equatable {
        /// The `iss` a token must carry; nil accepts any.
        public var issuer: String?
        /// A token's `aud` must name one of these; empty accepts any.
        public var audiences: [String]
        /// The keys: a JWKS file (resolved against the config file's directory) or inline JSON.
        public var jwksFile: String?
        public var jwks: String?
        /// Claim name to request header name (lower-case), sent upstream with the claim's value.
        public var claimsToHeaders: [String: String]
        /// Leeway for `exp` and `nbf`, for clocks a little apart.
        public var clockSkew: MeshDuration

        public init(
            issuer: String? = nil, audiences: [String] = [], jwksFile: String? = nil, jwks: String? = nil,
            claimsToHeaders: [String: String] = [:], clockSkew: MeshDuration = .seconds(30)
        ) {
            self.issuer = issuer
            self.audiences = audiences
            self.jwksFile = jwksFile
            self.jwks = jwks
            self.claimsToHeaders = claimsToHeaders
            self.clockSkew = clockSkew
        }
    }

    public struct APIKeys: Sendable, Equatable {
        public struct Key: Sendable, Equatable {
            /// What goes upstream in `x-mesh-user` (never the key).
            public var name: String
            /// The key's SHA-256, 32 bytes (written as 64 hex digits).
            public var sha256: [UInt8]

            public init(name: String, sha256: [UInt8]) {
                self.name = name
                self.sha256 = sha256
            }
        }

        /// The request header carrying the key (lower-case).
        public var header: String
        public var keys: [Key]

        public init(header: String = "x-api-key", keys: [Key]) {
            self.header = header
            self.keys = keys
        }
    }

    public var name: String
    public var resourceVersion: String?
    public var jwt: JWT?
    public var apiKeys: APIKeys?

    public init(name: String, resourceVersion: String? = nil, jwt: JWT? = nil, apiKeys: APIKeys? = nil) {
        self.name = name
        self.resourceVersion = resourceVersion
        self.jwt = jwt
        self.apiKeys = apiKeys
    }
}
