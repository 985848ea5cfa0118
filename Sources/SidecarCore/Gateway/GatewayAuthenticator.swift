import Crypto
import _CryptoExtras

/// Checks a request against one `AuthenticationPolicy`: a JWT in `Authorization: Bearer`
/// (signature by swift-crypto with a JWKS key, `alg` ES256 or RS256 only, so `none` and HMAC
/// are refused; then `exp`, `nbf`, `iss`, `aud`), or an API key in the policy's header (its
/// SHA-256 compared with every stored hash in constant time). Either one passing is enough.
///
/// Immutable, built with the route table (off the request path: the JWKS is read and parsed
/// there). A JWKS that cannot be loaded leaves the policy refusing every token (`no-keys`),
/// never accepting one. Secrets never appear in what it returns.
final class GatewayAuthenticator: Sendable {
    /// Why a request was refused: the `reason` label of `sidecar_gateway_auth_failures_total`.
    enum Reason: String, Sendable, CaseIterable {
        case missing
        case malformed
        case algorithm
        case unknownKey = "unknown-key"
        case signature
        case expired
        case notYetValid = "not-yet-valid"
        case issuer
        case audience
        case noKeys = "no-keys"
        case wrongKey = "wrong-key"
    }

    enum Outcome: Equatable {
        /// Who it is (`sub`, or the API key's name) and the claims to send upstream as headers.
        case verified(user: String, claimHeaders: [(name: String, value: String)])
        case refused(Reason)

        static func == (lhs: Outcome, rhs: Outcome) -> Bool {
            switch (lhs, rhs) {
            case let (.verified(a, x), .verified(b, y)): a == b && x.elementsEqual(y, by: { $0 == $1 })
            case let (.refused(a), .refused(b)): a == b
            default: false
            }
        }
    }

    let policy: AuthenticationPolicy
    private let keys: JSONWebKeySet?
    /// Why the JWKS could not be loaded (logged once by the table's builder).
    let keysProblem: String?

    init(_ policy: AuthenticationPolicy, readFile: (String) throws -> [UInt8] = { try readWholeFile($0) }) {
        self.policy = policy
        var keys: JSONWebKeySet?
        var problem: String?
        if let jwt = policy.jwt {
            do {
                let json: [UInt8] = try jwt.jwks.map { Array($0.utf8) } ?? readFile(jwt.jwksFile ?? "")
                keys = try JSONWebKeySet(json: json)
            } catch {
                problem = "AuthenticationPolicy \(policy.name): \(jwt.jwksFile ?? "jwks"): \(error)"
            }
        }
        self.keys = keys
        self.keysProblem = problem
    }

    /// The `WWW-Authenticate` challenge of a 401 from this policy.
    var challenge: String {
        var schemes: [String] = []
        if policy.jwt != nil { schemes.append("Bearer realm=\"\(policy.name)\"") }
        if let apiKeys = policy.apiKeys { schemes.append("ApiKey realm=\"\(policy.name)\", header=\"\(apiKeys.header)\"") }
        return schemes.joined(separator: ", ")
    }

    /// - Parameters:
    ///   - header: the request's first value of a header name (lower-case).
    ///   - now: Unix seconds (wall clock, passed in so tests choose it).
    func authenticate(header: (String) -> String?, now: Int64) -> Outcome {
        var refusal = Reason.missing
        if let apiKeys = policy.apiKeys, let presented = header(apiKeys.header) {
            if let name = Self.keyName(presented, in: apiKeys.keys) { return .verified(user: name, claimHeaders: []) }
            refusal = .wrongKey
        }
        if let jwt = policy.jwt, let authorization = header("authorization") {
            guard authorization.utf8.count > 7, authorization.prefix(7).lowercased() == "bearer " else { return .refused(.malformed) }
            return verify(token: authorization.dropFirst(7).trimmingSpaces, settings: jwt, now: now)
        }
        return .refused(refusal)
    }

    /// The name of the key whose hash is `SHA-256(presented)`. Every stored hash is compared
    /// in full, whatever matched, so the time taken says nothing about which bytes matched.
    static func keyName(_ presented: String, in keys: [AuthenticationPolicy.APIKeys.Key]) -> String? {
        let digest = Array(SHA256.hash(data: Array(presented.utf8)))
        var found: String?
        for key in keys {
            var difference: UInt8 = key.sha256.count == digest.count ? 0 : 1
            for (a, b) in zip(key.sha256, digest) { difference |= a ^ b }
            if difference == 0, found == nil { found = key.name }
        }
        return found
    }

    private func verify(token: Substring, settings: AuthenticationPolicy.JWT, now: Int64) -> Outcome {
        guard let keys else { return .refused(.noKeys) }
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count <= 16 * 1024,
            let headerBytes = Base64URL.decode(parts[0]), let header = JSONValue.parse(headerBytes)?.object,
            let claimBytes = Base64URL.decode(parts[1]), let claims = JSONValue.parse(claimBytes)?.object,
            let signature = Base64URL.decode(parts[2])
        else { return .refused(.malformed) }
        // The algorithm is the key's, never the token's choice: `none`, HS256 and the rest are refused.
        guard let algorithm = header["alg"]?.string, algorithm == "ES256" || algorithm == "RS256" else {
            return .refused(.algorithm)
        }
        if let critical = header["crit"], critical != .array([]) { return .refused(.malformed) }
        let candidates = keys.candidates(kid: header["kid"]?.string, algorithm: algorithm)
        guard !candidates.isEmpty else { return .refused(.unknownKey) }
        let signingInput = Array(token.utf8.prefix(parts[0].count + 1 + parts[1].count))
        let digest = SHA256.hash(data: signingInput)
        let valid = candidates.contains { key in
            switch key {
            case .es256(let key):
                guard signature.count == 64, let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else {
                    return false
                }
                return key.isValidSignature(ecdsa, for: digest)
            case .rs256(let key):
                return key.isValidSignature(
                    _RSA.Signing.RSASignature(rawRepresentation: signature), for: digest, padding: .insecurePKCS1v1_5)
            }
        }
        guard valid else { return .refused(.signature) }
        let skew = settings.clockSkew.nanoseconds / 1_000_000_000
        // `exp` is required: a token that never expires is not accepted at the edge.
        guard let expiry = claims["exp"]?.number else { return .refused(.malformed) }
        guard Double(now - skew) < expiry else { return .refused(.expired) }
        if let notBefore = claims["nbf"] {
            guard let value = notBefore.number else { return .refused(.malformed) }
            guard Double(now + skew) >= value else { return .refused(.notYetValid) }
        }
        if let issuer = settings.issuer, claims["iss"]?.string != issuer { return .refused(.issuer) }
        if !settings.audiences.isEmpty {
            let audiences: [String]
            switch claims["aud"] {
            case .string(let one): audiences = [one]
            case .array(let many): audiences = many.compactMap(\.string)
            default: audiences = []
            }
            guard audiences.contains(where: settings.audiences.contains) else { return .refused(.audience) }
        }
        guard let subject = claims["sub"]?.string, !subject.isEmpty else { return .refused(.malformed) }
        var claimHeaders: [(name: String, value: String)] = []
        for (claim, headerName) in settings.claimsToHeaders.sorted(by: { $0.key < $1.key }) {
            let value: String?
            switch claims[claim] {
            case .string(let text): value = text
            case .number(let number): value = number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
            case .bool(let flag): value = flag ? "true" : "false"
            default: value = nil
            }
            // A claim value that cannot be a header value (CR, LF, NUL) is not sent.
            if let value, !value.utf8.contains(where: { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F }) {
                claimHeaders.append((headerName, value))
            }
        }
        return .verified(user: subject, claimHeaders: claimHeaders)
    }
}
