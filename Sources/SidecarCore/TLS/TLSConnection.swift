import COpenSSL
import NIOCore

/// What a finished handshake established, handed to later handlers in `TLSEvent.handshakeCompleted`.
public struct TLSHandshakeInfo: Sendable, Equatable {
    /// The SPIFFE ID of the peer's verified leaf, if it carries one.
    public let peerIdentity: SPIFFEID?
    /// The negotiated ALPN protocol, if any.
    public let negotiatedProtocol: String?
    /// The SNI the client sent (server side) or we sent (client side).
    public let serverName: String?
    /// Whether the session was resumed from an earlier one.
    public let resumed: Bool
    /// `TLSv1.3`, `TLSv1.2`.
    public let protocolVersion: String
    /// The peer leaf's notAfter (Unix seconds), if it presented one.
    public let peerCertificateNotAfter: Int64?
}

/// One TLS session over OpenSSL's `SSL*`, its transport a BIO over our buffers
/// (`ByteBufferBIO`): OpenSSL reads ciphertext straight out of the buffers the network read
/// (no copy into a memory BIO first) and writes records straight into the buffer we send (no
/// copy out of one). No I/O of its own; `TLSHandler` drives it on one event loop. Owns the
/// `SSL*` and frees it in `deinit`.
///
/// A TLS 1.3 AES-GCM connection hands its application data to the mesh's own record layer
/// (`TLS13RecordLayer`) after the handshake unless its configuration says `.openSSL`: the write
/// side at once, the read side as soon as OpenSSL holds nothing unread (a server at once, a
/// client after its first application record, so OpenSSL has read the server's session
/// tickets). From the switch on, anything OpenSSL would write is dropped: it never again
/// protects a record with the keys the mesh layer now uses.
final class TLSConnection {
    enum HandshakeResult {
        case complete
        case wantMoreData
        case failed(TLSError)
    }

    enum ReadResult {
        case data(ByteBuffer)
        case wantMoreData
        case closeNotify
        case failed(TLSError)
    }

    let context: TLSContext
    let peerIdentityPolicy: PeerIdentityPolicy
    /// Client: key of the session cache (server name + address).
    let sessionKey: String?
    let ssl: OpaquePointer
    private var verifyFailure: TLSError?
    /// Ciphertext received and not yet read by OpenSSL: the network's own read buffer (released
    /// as soon as OpenSSL has read all of it, so NIO can reuse it for the next read).
    fileprivate var inbound: ByteBuffer?
    /// Ciphertext OpenSSL wrote since the last `takeOutput()`.
    fileprivate var outbound: ByteBuffer?
    private let allocator = ByteBufferAllocator()
    /// The mesh's record layer once the write side switched; nil while OpenSSL protects records.
    private var recordLayer: TLS13RecordLayer?
    /// Secrets and record counts for the switch; dropped once both sides switched.
    fileprivate var trace = TLS13HandshakeTrace()

    private static let exDataIndex: Int32 = COpenSSL_SSL_get_ex_new_index()

    init(
        context: TLSContext, serverName: String?, peerIdentity: PeerIdentityPolicy?, sessionKey: String?
    ) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else {
            throw TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "SSL_new failed"))
        }
        guard let bio = BIO_new(ByteBufferBIO.method) else {
            SSL_free(ssl)
            throw TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "BIO_new failed"))
        }
        self.context = context
        self.ssl = ssl
        self.peerIdentityPolicy = peerIdentity ?? context.configuration.peerIdentity
        self.sessionKey = context.role == .client ? (sessionKey ?? serverName) : nil
        // The BIO finds this connection through its data pointer (unretained: the SSL, which
        // owns the BIO, is freed in this object's deinit).
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        SSL_set_bio(ssl, bio, bio)  // one BIO both ways: one reference, freed by SSL_free
        SSL_set_ex_data(ssl, Self.exDataIndex, Unmanaged.passUnretained(self).toOpaque())
        if context.configuration.recordLayer == .mesh {
            SSL_set_msg_callback(ssl, tlsMessageCallback)
        }
        switch context.role {
        case .client:
            SSL_set_connect_state(ssl)
            if let serverName, !serverName.isEmpty {
                _ = COpenSSL_SSL_set_tlsext_host_name(ssl, serverName)
            }
            if !context.alpnWire.isEmpty {
                _ = context.alpnWire.withUnsafeBufferPointer {
                    SSL_set_alpn_protos(ssl, $0.baseAddress, UInt32($0.count))
                }
            }
            if let key = self.sessionKey, let session = context.sessionCache?.session(for: key) {
                _ = SSL_set_session(ssl, session.session)
            }
        case .server:
            SSL_set_accept_state(ssl)
        }
    }

    deinit {
        SSL_free(ssl)  // frees the BIO too
    }

    /// The connection whose `SSL*` this is; only valid inside an OpenSSL callback that runs
    /// during a call on that connection.
    static func from(ssl: OpaquePointer) -> TLSConnection? {
        guard let raw = SSL_get_ex_data(ssl, exDataIndex) else { return nil }
        return Unmanaged<TLSConnection>.fromOpaque(raw).takeUnretainedValue()
    }

    // MARK: Ciphertext in and out

    /// Ciphertext from the network. Kept as it is when nothing is left of the last one (the
    /// common case: whole records per read); appended to what is left otherwise.
    func receive(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        if inbound == nil {
            inbound = buffer
        } else {
            inbound!.writeImmutableBuffer(buffer)
        }
    }

    var hasPendingOutput: Bool { (outbound?.readableBytes ?? 0) > 0 }

    /// Ciphertext OpenSSL produced since the last call, in one buffer; nil when none.
    func takeOutput() -> ByteBuffer? {
        guard let output = outbound, output.readableBytes > 0 else { return nil }
        outbound = nil
        return output
    }

    /// The start of a record that has not all arrived yet, kept in a buffer of its own size
    /// rather than in the network's (up to 64 KiB) read buffer, which NIO can then reuse.
    private func keepOnlyTheRest() {
        guard let rest = inbound, rest.capacity > 4 * rest.readableBytes + 4096 else { return }
        var copy = allocator.buffer(capacity: rest.readableBytes)
        copy.writeImmutableBuffer(rest)
        inbound = copy
    }

    /// The BIO's read: up to `count` bytes of ciphertext into OpenSSL's buffer; 0 when none.
    fileprivate func readCiphertext(into destination: UnsafeMutableRawPointer, count: Int) -> Int {
        guard inbound != nil else { return 0 }
        let copied = inbound!.readWithUnsafeReadableBytes { bytes in
            let copied = min(count, bytes.count)
            destination.copyMemory(from: bytes.baseAddress!, byteCount: copied)
            return copied
        }
        if inbound!.readableBytes == 0 { inbound = nil }
        return copied
    }

    /// The BIO's write: a record (or part of one) OpenSSL made, appended to what we send next.
    fileprivate func writeCiphertext(_ bytes: UnsafeRawBufferPointer) {
        // After the switch OpenSSL's keys and sequence numbers are stale: what it writes (an
        // answer to a KeyUpdate it read, an alert) must not reach the wire; the mesh layer
        // sends its own.
        guard recordLayer == nil else { return }
        if outbound == nil { outbound = allocator.buffer(capacity: max(bytes.count, 1024)) }
        outbound!.writeBytes(bytes)
    }

    /// Room for the records of `plaintext` bytes (per 16 KiB record at most 29 bytes of header,
    /// nonce and tag: TLS 1.2's AES-GCM; 22 in TLS 1.3), so a large write grows the output
    /// buffer once, not record by record.
    private func reserveOutput(forPlaintext plaintext: Int) {
        let needed = plaintext + (plaintext / 16_384 + 1) * 29
        if outbound == nil {
            outbound = allocator.buffer(capacity: needed)
        } else if outbound!.writableBytes < needed {
            outbound!.reserveCapacity(outbound!.writerIndex + needed)
        }
    }

    // MARK: Handshake

    func handshake() -> HandshakeResult {
        Self.clearErrorQueue()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            // Resumed sessions skip the verify callback: check the identity policy again here.
            if SSL_session_reused(ssl) == 1, let refusal = resumedIdentityRefusal() {
                return .failed(refusal)
            }
            startRecordLayer()
            return .complete
        }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            keepOnlyTheRest()
            return .wantMoreData
        default:
            return .failed(classifyFailure(duringHandshake: true))
        }
    }

    var handshakeInfo: TLSHandshakeInfo {
        var alpnPointer: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnPointer, &alpnLength)
        let alpn = alpnPointer.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) }
        let serverName = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
        let peer = peerCertificate
        return TLSHandshakeInfo(
            peerIdentity: peer?.spiffeID,
            negotiatedProtocol: alpn,
            serverName: serverName,
            resumed: SSL_session_reused(ssl) == 1,
            protocolVersion: String(cString: SSL_get_version(ssl)),
            peerCertificateNotAfter: peer?.notAfter
        )
    }

    var peerCertificate: TLSCertificate? {
        SSL_get0_peer_certificate(ssl).map { TLSCertificate(borrowing: $0) }
    }

    /// `SSL_get_error` reads the thread's error queue, so it must be empty before each call.
    /// Failures drain it where they happen (`OpenSSLErrorQueue`), so it nearly always is:
    /// a peek (one thread-local read) saves `ERR_clear_error`'s pass over all 16 slots, about
    /// 800 instructions, twice per request.
    @inline(__always)
    private static func clearErrorQueue() {
        if ERR_peek_error() != 0 { ERR_clear_error() }
    }

    // MARK: Application data

    /// Decrypts what is available, up to about `limit` bytes.
    /// Without ciphertext waiting in the read BIO or a record OpenSSL holds, there is nothing
    /// to decrypt: the answer is `wantMoreData` without an `SSL_read` (the read loop's last
    /// call, once per batch). The buffer is sized by what can come out: plaintext is never
    /// longer than the ciphertext it came from.
    func read(allocator: ByteBufferAllocator, limit: Int = 16 * 1024) -> ReadResult {
        if let recordLayer, recordLayer.readsRecords { return readRecords(recordLayer, allocator: allocator) }
        let ciphertext = inbound?.readableBytes ?? 0
        let held = SSL_has_pending(ssl) == 1
        guard ciphertext > 0 || held else { return .wantMoreData }  // nothing kept: `inbound` is nil
        Self.clearErrorQueue()
        let capacity = held ? limit : min(limit, ciphertext)
        var buffer = allocator.buffer(capacity: capacity)
        var result: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { pointer in
            result = SSL_read(ssl, pointer.baseAddress, Int32(min(pointer.count, Int(Int32.max))))
            return result > 0 ? Int(result) : 0
        }
        if recordLayer != nil { answerPeerKeyUpdate() }
        if result > 0 {
            if recordLayer != nil { startReadingRecords() }
            return .data(buffer)
        }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            keepOnlyTheRest()
            return .wantMoreData
        case SSL_ERROR_ZERO_RETURN:
            return .closeNotify
        default:
            return .failed(classifyFailure(duringHandshake: false))
        }
    }

    /// Encrypts all of `buffer` into the output buffer.
    func write(_ buffer: ByteBuffer) throws(TLSError) {
        reserveOutput(forPlaintext: buffer.readableBytes)
        if let recordLayer {
            let failure: TLSError? = buffer.withUnsafeReadableBytes { bytes in
                do throws(TLSError) {
                    try recordLayer.write(bytes, into: &outbound!)
                    return nil
                } catch {
                    return error
                }
            }
            if let failure { throw failure }
            return
        }
        Self.clearErrorQueue()
        let failure: TLSError? = buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let chunk = Int32(min(bytes.count - offset, 1 << 30))
                let written = SSL_write(ssl, bytes.baseAddress! + offset, chunk)
                if written <= 0 {
                    return TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "SSL_write failed"))
                }
                offset += Int(written)
            }
            return nil
        }
        if let failure { throw failure }
    }

    /// Queues our close_notify alert.
    func shutdown() {
        if let recordLayer {
            if outbound == nil { outbound = allocator.buffer(capacity: 32) }
            recordLayer.sendAlert(.closeNotify, into: &outbound!)
            // As SSL_shutdown would: a session whose connection ended without close_notify is
            // taken out of the cache (and not resumed) by SSL_free.
            SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN)
            return
        }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    // MARK: The mesh record layer

    /// The mesh's record layer once it writes this connection's records (tests).
    var meshRecordLayer: TLS13RecordLayer? { recordLayer }

    /// At the end of the handshake: the write side moves to the mesh layer (a server's read
    /// side too: it has read exactly up to the client's Finished). Connections it does not
    /// cover (TLS 1.2, ChaCha20, no key log) stay with OpenSSL and stop tracing.
    private func startRecordLayer() {
        guard recordLayer == nil, context.configuration.recordLayer == .mesh else { return }
        let isClient = context.role == .client
        guard SSL_version(ssl) == TLS1_3_VERSION, let cipher = SSL_get_current_cipher(ssl),
            let suite = TLS13RecordProtection.Suite(openSSLName: String(cString: SSL_CIPHER_get_name(cipher))),
            trace.written.afterFinished, let secret = isClient ? trace.clientSecret : trace.serverSecret,
            let sealer = try? TLS13RecordProtection(
                suite: suite,
                trafficSecret: TLS13RecordProtection.trafficSecret(secret, advancedBy: trace.written.keyUpdates, suite: suite),
                sealing: true, sequence: trace.written.records)
        else {
            stopTracing()
            return
        }
        recordLayer = TLS13RecordLayer(sealer: sealer, recordsPerKey: context.configuration.recordsPerKey)
        if !isClient { startReadingRecords() }
    }

    /// The read side moves to the mesh layer when OpenSSL holds no record or part of one.
    private func startReadingRecords() {
        guard let recordLayer, !recordLayer.readsRecords, trace.read.afterFinished, SSL_has_pending(ssl) == 0,
            let secret = context.role == .client ? trace.serverSecret : trace.clientSecret,
            let opener = try? TLS13RecordProtection(
                suite: recordLayer.suite,
                trafficSecret: TLS13RecordProtection.trafficSecret(
                    secret, advancedBy: trace.read.keyUpdates, suite: recordLayer.suite),
                sealing: false, sequence: trace.read.records)
        else { return }
        recordLayer.startReading(with: opener)
        stopTracing()
    }

    /// OpenSSL read a KeyUpdate asking for ours after the write side switched: the mesh layer
    /// answers (OpenSSL's own answer was dropped).
    private func answerPeerKeyUpdate() {
        guard trace.peerRequestedKeyUpdate, let recordLayer else { return }
        trace.peerRequestedKeyUpdate = false
        if outbound == nil { outbound = allocator.buffer(capacity: 32) }
        try? recordLayer.sendKeyUpdate(requestingPeer: false, into: &outbound!)
    }

    private func stopTracing() {
        SSL_set_msg_callback(ssl, nil)
        trace = TLS13HandshakeTrace()
    }

    private func readRecords(_ recordLayer: TLS13RecordLayer, allocator: ByteBufferAllocator) -> ReadResult {
        guard inbound != nil else { return .wantMoreData }
        let result = recordLayer.read(&inbound!, allocator: allocator, replies: &outbound)
        if inbound!.readableBytes == 0 {
            inbound = nil
        } else if case .wantMoreData = result {
            keepOnlyTheRest()
        }
        if case .closeNotify = result { SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN) }
        return result
    }

    // MARK: Failure reasons

    func recordVerifyFailure(x509Error: Int32) {
        let reason: TLSFailureReason
        switch x509Error {
        case X509_V_ERR_CERT_HAS_EXPIRED: reason = .expired
        case X509_V_ERR_CERT_NOT_YET_VALID: reason = .notYetValid
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
            X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
            X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, X509_V_ERR_CERT_SIGNATURE_FAILURE:
            reason = .untrustedIssuer
        default: reason = .invalidCertificate
        }
        let text = String(cString: X509_verify_cert_error_string(Int(x509Error)))
        if verifyFailure == nil { verifyFailure = TLSError(reason, "peer certificate: \(text)") }
    }

    func recordIdentityRefusal(_ reason: TLSFailureReason, presented: SPIFFEID?) {
        let shown = presented?.description ?? "a certificate with no SPIFFE ID"
        verifyFailure = TLSError(
            reason, "peer presented \(shown), expected \(peerIdentityPolicy.expectation)", presentedIdentity: presented)
    }

    private func resumedIdentityRefusal() -> TLSError? {
        // A client that presented no certificate where one is optional (the control plane's
        // API: CLI and browsers use a token) was not checked at its first handshake either.
        if peerCertificate == nil, context.configuration.certificateVerification == .optional { return nil }
        let identity = peerCertificate?.spiffeID
        guard let reason = peerIdentityPolicy.evaluate(identity) else { return nil }
        context.sessionCache.map { cache in sessionKey.map { cache.removeSession(for: $0) } }
        return TLSError(
            reason,
            "resumed session's peer presented \(identity?.description ?? "no SPIFFE ID"), expected \(peerIdentityPolicy.expectation)",
            presentedIdentity: identity)
    }

    private func classifyFailure(duringHandshake: Bool) -> TLSError {
        let entries = OpenSSLErrorQueue.drain()
        let detail = entries.isEmpty ? "connection failed" : entries.map(\.text).joined(separator: "; ")
        if let verifyFailure { return verifyFailure }
        guard let first = entries.first, first.library == UInt(ERR_LIB_SSL) else {
            return TLSError(.other, detail)
        }
        switch Int32(first.reason) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            return TLSError(.peerNoCertificate, "peer sent no certificate")
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
            return TLSError(.peerNoCertificate, "peer requires a certificate and we sent none")
        case SSL_R_UNSUPPORTED_PROTOCOL, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION, SSL_R_NO_PROTOCOLS_AVAILABLE,
            SSL_R_WRONG_SSL_VERSION:
            return TLSError(.protocolVersion, detail)
        case SSL_R_WRONG_VERSION_NUMBER, SSL_R_HTTP_REQUEST, SSL_R_HTTPS_PROXY_REQUEST,
            SSL_R_PACKET_LENGTH_TOO_LONG, SSL_R_RECORD_LENGTH_MISMATCH, SSL_R_UNKNOWN_PROTOCOL,
            SSL_R_UNEXPECTED_RECORD, SSL_R_UNEXPECTED_MESSAGE, SSL_R_RECORD_TOO_SMALL:
            return TLSError(duringHandshake ? .notTLS : .other, detail)
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
            return TLSError(.untrustedIssuer, "peer does not trust our certificate's issuer")
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
            return TLSError(.expired, "peer says our certificate expired")
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE, SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN,
            SSL_R_TLSV1_ALERT_ACCESS_DENIED, SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
            return TLSError(.peerRejected, "peer refused our certificate: \(detail)")
        case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
            return TLSError(.peerRejected, "peer aborted the handshake (it may not accept our identity): \(detail)")
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
            let result = Int32(SSL_get_verify_result(ssl))
            recordVerifyFailure(x509Error: result)
            return verifyFailure ?? TLSError(.invalidCertificate, detail)
        default:
            return TLSError(.other, detail)
        }
    }
}

/// OpenSSL's transport for a `TLSConnection`: a BIO whose read takes ciphertext from the
/// connection's `inbound` buffer and whose write appends to its `outbound` buffer. Where a pair
/// of memory BIOs copied every record twice more (into the read BIO, out of the write BIO) and
/// kept their own growing buffers. An empty `inbound` reads as "retry later", never as end of
/// file: the transport's end is NIO's to report.
enum ByteBufferBIO {
    nonisolated(unsafe) static let method: OpaquePointer = makeMethod()

    private static func makeMethod() -> OpaquePointer {
        guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mesh ByteBuffer") else {
            fatalError("BIO_meth_new failed: \(OpenSSLErrorQueue.drainedDescription(fallback: "out of memory"))")
        }
        _ = BIO_meth_set_create(method) { bio in
            BIO_set_init(bio, 1)
            return 1
        }
        _ = BIO_meth_set_destroy(method) { bio in
            BIO_set_data(bio, nil)
            return 1
        }
        _ = BIO_meth_set_write(method) { bio, data, length in
            guard let bio, let data, length > 0, let connection = ByteBufferBIO.connection(of: bio) else { return 0 }
            BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
            connection.writeCiphertext(UnsafeRawBufferPointer(start: data, count: Int(length)))
            return length
        }
        _ = BIO_meth_set_read(method) { bio, data, length in
            guard let bio, let data, length > 0, let connection = ByteBufferBIO.connection(of: bio) else { return 0 }
            BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
            let copied = connection.readCiphertext(into: data, count: Int(length))
            if copied == 0 {
                BIO_set_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY)
                return -1
            }
            return Int32(copied)
        }
        // OpenSSL asks about a dozen questions per record (flush, kTLS, pending...): only the
        // two pending counts need the connection, so the others answer without touching it.
        _ = BIO_meth_set_ctrl(method) { bio, command, _, _ in
            switch command {
            case BIO_CTRL_FLUSH: return 1
            case BIO_CTRL_PENDING:
                guard let bio, let connection = ByteBufferBIO.connection(of: bio) else { return 0 }
                return connection.inbound?.readableBytes ?? 0
            case BIO_CTRL_WPENDING:
                guard let bio, let connection = ByteBufferBIO.connection(of: bio) else { return 0 }
                return connection.outbound?.readableBytes ?? 0
            default: return 0
            }
        }
        return method
    }

    private static func connection(of bio: OpaquePointer) -> TLSConnection? {
        BIO_get_data(bio).map { Unmanaged<TLSConnection>.fromOpaque($0).takeUnretainedValue() }
    }
}

/// OpenSSL's key log, read for the application traffic secrets (`TLS13HandshakeTrace`); set
/// on every context (a server's SNI may switch an `SSL*` to another one).
let tlsKeyLogCallback: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { ssl, line in
    guard let ssl, let line, let connection = TLSConnection.from(ssl: ssl),
        connection.context.configuration.recordLayer == .mesh
    else { return }
    connection.trace.keyLog(line)
}

/// OpenSSL's message callback, set per `SSL*` until the switch: record headers and handshake
/// messages both ways (`TLS13HandshakeTrace`).
let tlsMessageCallback:
    @convention(c) (Int32, Int32, Int32, UnsafeRawPointer?, Int, OpaquePointer?, UnsafeMutableRawPointer?) -> Void = {
        written, _, contentType, bytes, length, ssl, _ in
        guard let ssl, let connection = TLSConnection.from(ssl: ssl) else { return }
        connection.trace.message(
            written: written != 0, contentType: contentType, bytes: UnsafeRawBufferPointer(start: bytes, count: bytes == nil ? 0 : length))
    }
