import Crypto
import _CryptoExtras

/// The public keys of an `AuthenticationPolicy`'s JWKS (RFC 7517), ready to verify: EC P-256
/// keys for ES256 and RSA keys (2048 bits or more) for RS256, by `kid`. A key whose `alg` or
/// `use` says it is for something else is left out; a JWKS with no usable key is an error.
struct JSONWebKeySet: Sendable {
    enum Key: Sendable {
        case es256(P256.Signing.PublicKey)
        case rs256(_RSA.Signing.PublicKey)

        var algorithm: String {
            switch self {
            case .es256: "ES256"
            case .rs256: "RS256"
            }
        }
    }

    struct Entry: Sendable {
        let id: String?
        let key: Key
    }

    let entries: [Entry]

    /// Parses JWKS JSON; the error says what is wrong, never echoing key material.
    init(json: some Collection<UInt8>) throws(JWKSError) {
        guard let root = JSONValue.parse(json)?.object, let keys = root["keys"]?.array else {
            throw JWKSError("not a JWKS (a JSON object with a \"keys\" list)")
        }
        var entries: [Entry] = []
        for (index, value) in keys.enumerated() {
            guard let jwk = value.object else { throw JWKSError("keys[\(index)] is not an object") }
            if let use = jwk["use"]?.string, use != "sig" { continue }
            let id = jwk["kid"]?.string
            switch jwk["kty"]?.string {
            case "EC":
                guard jwk["crv"]?.string == "P-256", jwk["alg"]?.string ?? "ES256" == "ES256" else { continue }
                guard let x = jwk["x"]?.string.flatMap({ Base64URL.decode($0.utf8) }), x.count == 32,
                    let y = jwk["y"]?.string.flatMap({ Base64URL.decode($0.utf8) }), y.count == 32,
                    let key = try? P256.Signing.PublicKey(rawRepresentation: x + y)
                else { throw JWKSError("keys[\(index)]: not a valid P-256 public key (x, y)") }
                entries.append(Entry(id: id, key: .es256(key)))
            case "RSA":
                guard jwk["alg"]?.string ?? "RS256" == "RS256" else { continue }
                guard let n = jwk["n"]?.string.flatMap({ Base64URL.decode($0.utf8) }),
                    let e = jwk["e"]?.string.flatMap({ Base64URL.decode($0.utf8) }),
                    let key = try? _RSA.Signing.PublicKey(n: n, e: e)
                else { throw JWKSError("keys[\(index)]: not a valid RSA public key (n, e; at least 2048 bits)") }
                entries.append(Entry(id: id, key: .rs256(key)))
            default:
                continue
            }
        }
        guard !entries.isEmpty else { throw JWKSError("no ES256 (EC P-256) or RS256 (RSA) signing key in it") }
        self.entries = entries
    }

    /// The keys a token with header `kid` and `alg` may be checked with (all of that
    /// algorithm when it names no `kid`).
    func candidates(kid: String?, algorithm: String) -> [Key] {
        entries.filter { ($0.id == kid || kid == nil) && $0.key.algorithm == algorithm }.map(\.key)
    }
}

struct JWKSError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
