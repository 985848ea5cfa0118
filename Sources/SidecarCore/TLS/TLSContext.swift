import COpenSSL
import NIOConcurrencyHelpers

/// Whether this end starts the handshake (client) or answers it (server).
public enum TLSRole: Sendable {
    case client
    case server
}

/// A shared OpenSSL `SSL_CTX` built once from a `TLSConfiguration`, then used read-only by every
/// connection on every event loop (OpenSSL contexts are thread-safe once configured).
///
/// Build it off the event loop: it reads files and parses keys. A rotated certificate means a
/// new context; connections keep the context they started with.
public final class TLSContext: @unchecked Sendable {
    public let configuration: TLSConfiguration
    public let role: TLSRole
    /// Our own leaf certificate, when we present one.
    public let leafCertificate: TLSCertificate?
    let context: OpaquePointer
    /// ALPN protocols in wire format (length-prefixed), our preference order.
    let alpnWire: [UInt8]
    let sessionCache: TLSSessionCache?
    /// Server: the contexts SNI may switch to, the first whose leaf names the requested host
    /// (DNS SAN); none matching keeps this one (see `TLSContext+ServerName.swift`).
    let serverNameContexts: [TLSContext]

    /// - Parameter serverNameContexts: server only; other certificates chosen by SNI.
    public init(
        configuration: TLSConfiguration, role: TLSRole, serverNameContexts: [TLSContext] = []
    ) throws(TLSConfigurationError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_method()) else {
            throw TLSConfigurationError(file: nil, OpenSSLErrorQueue.drainedDescription(fallback: "SSL_CTX_new failed"))
        }
        self.context = context
        self.configuration = configuration
        self.role = role
        self.alpnWire = configuration.alpnProtocols.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        self.sessionCache = role == .client ? TLSSessionCache(capacity: 1024) : nil
        self.serverNameContexts = role == .server ? serverNameContexts : []

        // Everything below may throw; `deinit` frees the context on every path.
        var leaf: TLSCertificate?
        if let chainSource = configuration.certificateChain {
            let chain = try TLSCertificate.loadChain(from: chainSource)
            leaf = chain[0]
            guard SSL_CTX_use_certificate(context, chain[0].x509) == 1 else {
                throw TLSConfigurationError(
                    file: chainSource.displayName,
                    "certificate refused: \(OpenSSLErrorQueue.drainedDescription(fallback: "unknown error"))")
            }
            for intermediate in chain.dropFirst() {
                guard COpenSSL_SSL_CTX_add1_chain_cert(context, intermediate.x509) == 1 else {
                    throw TLSConfigurationError(
                        file: chainSource.displayName,
                        "intermediate refused: \(OpenSSLErrorQueue.drainedDescription(fallback: "unknown error"))")
                }
            }
            guard let keySource = configuration.privateKey else {
                throw TLSConfigurationError(file: chainSource.displayName, "a certificate needs its private key")
            }
            let key = try TLSPrivateKey.load(from: keySource)
            guard SSL_CTX_use_PrivateKey(context, key.pkey) == 1, SSL_CTX_check_private_key(context) == 1 else {
                OpenSSLErrorQueue.drain().forEach { _ in }
                throw TLSConfigurationError(
                    file: keySource.displayName, "private key does not match the certificate in \(chainSource.displayName)")
            }
        } else if role == .server {
            throw TLSConfigurationError(file: nil, "a TLS server needs a certificate chain and private key")
        }
        self.leafCertificate = leaf

        if let rootsSource = configuration.trustRoots {
            let roots = try TLSCertificate.loadChain(from: rootsSource)
            let store = SSL_CTX_get_cert_store(context)
            for root in roots where X509_STORE_add_cert(store, root.x509) != 1 {
                let detail = OpenSSLErrorQueue.drainedDescription(fallback: "unknown error")
                if !detail.contains("cert already in hash table") {
                    throw TLSConfigurationError(file: rootsSource.displayName, "trust root refused: \(detail)")
                }
            }
        } else if configuration.certificateVerification != .none {
            throw TLSConfigurationError(file: nil, "verifying peers needs trust roots (a trust bundle)")
        }

        try Self.configureVersions(context, configuration)
        Self.configureVerification(context, configuration, role)

        // No SSL_MODE_RELEASE_BUFFERS: it frees a connection's record buffers whenever they are
        // empty, so every request allocated and freed two of them (16 KiB each) again; a kept
        // connection holds them instead (only their touched pages are resident).
        // No renegotiation (TLS 1.2), no compression; TLS 1.3 suites AES-128-GCM first, by the
        // server's preference (ChaCha20 for a client that prefers it): shims.c.
        guard COpenSSL_SSL_CTX_set_mesh_options(context) == 1 else {
            throw TLSConfigurationError(file: nil, "TLS 1.3 cipher suites refused: \(OpenSSLErrorQueue.drainedDescription(fallback: "unknown error"))")
        }

        // The application traffic secrets for the mesh record layer (`TLSConnection`).
        SSL_CTX_set_keylog_callback(context, tlsKeyLogCallback)

        switch role {
        case .server:
            // Needed for resumption when client certificates are verified.
            let sessionContext: [UInt8] = Array("mesh".utf8)
            _ = SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count))
            if !alpnWire.isEmpty {
                SSL_CTX_set_alpn_select_cb(context, tlsALPNSelectCallback, nil)
            }
            if !self.serverNameContexts.isEmpty {
                _ = COpenSSL_SSL_CTX_set_tlsext_servername_callback(context, tlsServerNameCallback)
            }
        case .client:
            _ = COpenSSL_SSL_CTX_set_session_cache_mode(
                context, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE))
            SSL_CTX_sess_set_new_cb(context, tlsNewSessionCallback)
        }
        ERR_clear_error()
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// The leaf's notAfter as Unix seconds (for `sidecar_cert_expiry_timestamp_seconds`).
    public var certificateExpiry: Int64? { leafCertificate?.notAfter }

    private static func configureVersions(
        _ context: OpaquePointer, _ configuration: TLSConfiguration
    ) throws(TLSConfigurationError) {
        func wire(_ version: TLSConfiguration.ProtocolVersion) -> Int32 {
            version == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        }
        guard configuration.minimumVersion <= configuration.maximumVersion else {
            throw TLSConfigurationError(file: nil, "minimum TLS version is above the maximum")
        }
        _ = COpenSSL_SSL_CTX_set_min_proto_version(context, wire(configuration.minimumVersion))
        _ = COpenSSL_SSL_CTX_set_max_proto_version(context, wire(configuration.maximumVersion))
    }

    private static func configureVerification(
        _ context: OpaquePointer, _ configuration: TLSConfiguration, _ role: TLSRole
    ) {
        let mode: Int32
        switch (configuration.certificateVerification, role) {
        case (.none, _):
            mode = SSL_VERIFY_NONE
        case (.optional, .server):
            mode = SSL_VERIFY_PEER
        case (.fullVerification, .server):
            mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        case (_, .client):
            mode = SSL_VERIFY_PEER
        }
        SSL_CTX_set_verify(context, mode, mode == SSL_VERIFY_NONE ? nil : tlsVerifyCallback)
    }
}

/// Client-side TLS sessions kept for resumption, keyed by server name (and address), bounded.
/// Touched once per handshake (not per request), so a lock is fine here.
final class TLSSessionCache: @unchecked Sendable {
    private let capacity: Int
    private let sessions: NIOLockedValueBox<[String: TLSSession]>

    init(capacity: Int) {
        self.capacity = capacity
        self.sessions = NIOLockedValueBox([:])
    }

    func store(_ session: TLSSession, for key: String) {
        sessions.withLockedValue { sessions in
            if sessions.count >= capacity, sessions[key] == nil, let victim = sessions.keys.first {
                sessions.removeValue(forKey: victim)
            }
            sessions[key] = session
        }
    }

    func session(for key: String) -> TLSSession? {
        sessions.withLockedValue { $0[key] }
    }

    func removeSession(for key: String) {
        _ = sessions.withLockedValue { $0.removeValue(forKey: key) }
    }
}

/// One `SSL_SESSION*` reference owned by Swift.
final class TLSSession: @unchecked Sendable {
    let session: OpaquePointer
    init(taking session: OpaquePointer) { self.session = session }
    deinit { SSL_SESSION_free(session) }
}

// MARK: - OpenSSL callbacks (C function pointers; they find their connection through ex_data)

/// Runs per certificate of the peer's chain. At the leaf, once the chain verified, applies the
/// connection's identity policy so a refused peer gets an alert during the handshake.
private let tlsVerifyCallback: @convention(c) (Int32, OpaquePointer?) -> Int32 = { preverifyOK, storeContext in
    guard let storeContext,
        let sslPointer = X509_STORE_CTX_get_ex_data(storeContext, SSL_get_ex_data_X509_STORE_CTX_idx()),
        let connection = TLSConnection.from(ssl: OpaquePointer(sslPointer))
    else { return preverifyOK }
    if preverifyOK != 1 {
        connection.recordVerifyFailure(x509Error: X509_STORE_CTX_get_error(storeContext))
        return 0
    }
    guard X509_STORE_CTX_get_error_depth(storeContext) == 0,
        let leaf = X509_STORE_CTX_get_current_cert(storeContext)
    else { return 1 }
    let identity = TLSCertificate(borrowing: leaf).spiffeID
    if let refusal = connection.peerIdentityPolicy.evaluate(identity) {
        connection.recordIdentityRefusal(refusal, presented: identity)
        X509_STORE_CTX_set_error(storeContext, X509_V_ERR_APPLICATION_VERIFICATION)
        return 0
    }
    return 1
}

/// Server ALPN choice: our first preference that the client also offers; no overlap or no
/// offer proceeds without ALPN (a mesh inbound accepts clients that offer none).
private let tlsALPNSelectCallback:
    @convention(c) (
        OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
        UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
    ) -> Int32 = { ssl, out, outLength, offered, offeredLength, _ in
        guard let ssl, let out, let outLength, let offered,
            let connection = TLSConnection.from(ssl: ssl)
        else { return SSL_TLSEXT_ERR_NOACK }
        let ours = connection.context.alpnWire
        var ourIndex = 0
        while ourIndex < ours.count {
            let ourLength = Int(ours[ourIndex])
            let candidate = ours[(ourIndex + 1)..<(ourIndex + 1 + ourLength)]
            var theirIndex = 0
            while theirIndex < Int(offeredLength) {
                let theirLength = Int(offered[theirIndex])
                let start = theirIndex + 1
                if start + theirLength <= Int(offeredLength), theirLength == ourLength,
                    candidate.elementsEqual(UnsafeBufferPointer(start: offered + start, count: theirLength))
                {
                    out.pointee = offered + start
                    outLength.pointee = UInt8(theirLength)
                    return SSL_TLSEXT_ERR_OK
                }
                theirIndex = start + theirLength
            }
            ourIndex += 1 + ourLength
        }
        return SSL_TLSEXT_ERR_NOACK
    }

/// A client received a session (TLS 1.3: a NewSessionTicket after the handshake): keep it for
/// the next connection to the same server. Returning 1 takes ownership of the reference.
private let tlsNewSessionCallback: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
    guard let ssl, let session, let connection = TLSConnection.from(ssl: ssl),
        let cache = connection.context.sessionCache, let key = connection.sessionKey
    else { return 0 }
    cache.store(TLSSession(taking: session), for: key)
    return 1
}
