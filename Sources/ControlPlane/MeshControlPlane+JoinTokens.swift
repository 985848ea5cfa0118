import Foundation
import MeshAPI
import SidecarCore

/// Who is calling, and the join tokens that prove a sidecar's service until it has a
/// certificate: created with a lifetime and an optional number of uses, listed, revoked,
/// and consumed one use per signed CSR.
///
/// The store keeps only each token's SHA-256; a token is found by the hash of the secret a
/// request presents. Tokens change (uses, revocation), so every check reads the store: only a
/// sidecar's bootstrap presents one (it uses its certificate afterwards), so that is rare.
extension MeshControlPlane {
    /// The longest `ttl` a token may get.
    static let maximumTokenLifetimeSeconds: Int64 = 365 * 24 * 3600

    // MARK: Authentication

    /// The principal for a bearer token or, failing that, a verified client certificate.
    ///
    /// Nonisolated and synchronous apart from one indexed SQLite read for a join token: the API
    /// server calls it on every request head, before it reads a body.
    nonisolated public func authenticate(bearer: String?, peer: SPIFFEID?) throws(ControlPlaneError) -> Principal {
        if let bearer, !bearer.isEmpty {
            if Self.constantTimeEquals(bearer, adminToken) { return .admin }
            // Looked up by the hash of the secret: what is compared is a digest the caller
            // cannot steer, so the lookup's timing tells nothing about stored secrets.
            let stored: JoinToken?
            do { stored = try store.joinToken(secretHash: DataDirectory.hash(bearer)) } catch { throw .store(error) }
            guard let stored else { throw .unauthenticated("invalid bearer token") }
            let state = stored.state(now: Self.unixNow())
            guard state == .active else { throw Self.refusal(stored, state) }
            return .joinToken(id: stored.id, service: stored.service)
        }
        if let peer, peer.trustDomain == authority.trustDomain, let service = peer.serviceName {
            return .service(service)
        }
        throw .unauthenticated("missing bearer token (Authorization: Bearer <token>) or client certificate")
    }

    /// The 401 for a token that exists but cannot be used, saying why.
    static func refusal(_ token: JoinToken, _ state: JoinToken.State) -> ControlPlaneError {
        switch state {
        case .expired:
            .unauthenticated("join token \(token.id) for service \(token.service) expired at \(rfc3339(token.expiresAt)); create a new one")
        case .revoked:
            .unauthenticated("join token \(token.id) for service \(token.service) was revoked; create a new one")
        case .usedUp:
            .unauthenticated("join token \(token.id) for service \(token.service) is used up (no uses left); create a new one")
        case .active:
            .unauthenticated("join token \(token.id) is not usable")
        }
    }

    private static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8), right = Array(rhs.utf8)
        guard left.count == right.count else { return false }
        return zip(left, right).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    // MARK: Join tokens

    /// Makes a token for `service` living `ttl` (default 24 h), exchangeable for at most `uses`
    /// certificates (nil: no limit). The secret is returned once and only its hash is stored.
    public func createJoinToken(
        service: String, ttl: MeshDuration? = nil, uses: Int? = nil
    ) async throws(ControlPlaneError) -> APIMessages.TokenResponse {
        guard ServiceName.isValid(service) else {
            let shown = service.count > 64 ? "\"\(service.prefix(64))…\" (\(service.count) characters)" : "\"\(service)\""
            throw .invalid("service \(shown) is not a valid service name (\(ServiceName.rule))")
        }
        var lifetime = JoinToken.defaultLifetimeSeconds
        if let ttl {
            lifetime = ttl.nanoseconds / 1_000_000_000
            guard lifetime >= 1, lifetime <= Self.maximumTokenLifetimeSeconds else {
                throw .invalid("ttl \(ttl) is out of range: between 1s and \(Self.maximumTokenLifetimeSeconds / 3600)h")
            }
        }
        if let uses, uses < 1 {
            throw .invalid("uses \(uses) must be at least 1 (leave it out for no limit)")
        }
        let secret = DataDirectory.makeSecret()
        let token = JoinToken(
            secretHash: DataDirectory.hash(secret), service: service, expiresAt: Self.unixNow() + lifetime, usesLeft: uses)
        do { try await store.saveJoinToken(token) } catch { throw .store(error) }
        return APIMessages.TokenResponse(
            token: secret, id: token.id, service: service, expiresAt: token.expiresAt, usesLeft: token.usesLeft)
    }

    /// Every stored token with its state; never a secret (the store has none).
    public func joinTokens() throws(ControlPlaneError) -> [APIMessages.TokenStatus] {
        let tokens: [JoinToken]
        do { tokens = try store.joinTokens() } catch { throw .store(error) }
        let now = Self.unixNow()
        return tokens.map { token in
            APIMessages.TokenStatus(
                id: token.id, service: token.service, expires: Self.rfc3339(token.expiresAt), usesLeft: token.usesLeft,
                state: token.state(now: now).rawValue)
        }
    }

    /// Revokes a token at once: the next request presenting it gets 401. Certificates it was
    /// already exchanged for stay valid until they expire.
    public func revokeJoinToken(id: String) async throws(ControlPlaneError) -> APIMessages.TokenStatus {
        let token: JoinToken
        do { token = try await store.revokeJoinToken(id: id) } catch { throw .store(error) }
        return APIMessages.TokenStatus(
            id: token.id, service: token.service, expires: Self.rfc3339(token.expiresAt), usesLeft: token.usesLeft,
            state: token.state(now: Self.unixNow()).rawValue)
    }

    // MARK: Certificates

    /// Signs the CSR for the principal's service. With a join token, the certificate is handed
    /// out only once one of the token's uses has been taken (atomically, in the store); a CSR
    /// the CA refuses takes no use.
    public func issueCertificate(
        csrPEM: String, principal: Principal
    ) async throws(ControlPlaneError) -> APIMessages.CertificateResponse {
        let requester: CertificateAuthority.Requester
        switch principal {
        case .admin: requester = .admin
        case .service(let service), .joinToken(_, let service): requester = .service(service)
        }
        let issued: CertificateAuthority.IssuedCertificate
        do { issued = try authority.issue(csrPEM: csrPEM, for: requester) } catch { throw .certificate(error) }
        if case .joinToken(let id, _) = principal {
            let use: JoinTokenUse
            do { use = try await store.consumeJoinToken(id: id, now: Self.unixNow()) } catch { throw .store(error) }
            switch use {
            case .consumed: break
            case .refused(let token, let state): throw Self.refusal(token, state)
            case .unknown: throw .unauthenticated("invalid bearer token")
            }
        }
        metrics.countCertificateIssued()
        return APIMessages.CertificateResponse(
            certificate: issued.certificatePEM, bundle: authority.rootPEM, identity: issued.identity.description,
            expiresAt: Int64(issued.expiresAt.timeIntervalSince1970))
    }

    // MARK: Time

    static func unixNow() -> Int64 { Int64(Date().timeIntervalSince1970) }

    static func rfc3339(_ seconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
