import COpenSSL
import NIOCore

/// TLS 1.3 record protection for one direction of one connection (RFC 8446 §5.2–5.3, §7.1–7.3):
/// the traffic keys derived from a traffic secret, the per-record nonce, and sealing and opening
/// of whole records with one OpenSSL EVP AES-GCM context keyed once.
///
/// The crypto of `TLS13RecordLayer`, the mesh's record layer for application data after
/// OpenSSL's handshake (bench/README, "What the rest of the gap is": OpenSSL 3.0 spends ~8k
/// instructions on a 200-byte record it writes, this ~3.4k). `TLS13RecordProtectionTests`
/// checks it against OpenSSL's own records on a real handshake.
final class TLS13RecordProtection {
    /// The TLS 1.3 cipher suites this protects with (TLS_CHACHA20_POLY1305_SHA256 stays with OpenSSL).
    enum Suite: Sendable, Equatable {
        case aes128GCMSHA256
        case aes256GCMSHA384

        /// From OpenSSL's name of the negotiated suite.
        init?(openSSLName name: String) {
            switch name {
            case "TLS_AES_128_GCM_SHA256": self = .aes128GCMSHA256
            case "TLS_AES_256_GCM_SHA384": self = .aes256GCMSHA384
            default: return nil
            }
        }

        var keyLength: Int { self == .aes128GCMSHA256 ? 16 : 32 }
        var hashLength: Int { self == .aes128GCMSHA256 ? 32 : 48 }
        fileprivate var digestName: String { self == .aes128GCMSHA256 ? "SHA256" : "SHA384" }
        fileprivate var cipherName: String { self == .aes128GCMSHA256 ? "AES-128-GCM" : "AES-256-GCM" }
    }

    enum ContentType: UInt8 {
        case alert = 21
        case handshake = 22
        case applicationData = 23
    }

    static let headerLength = 5
    static let tagLength = 16
    static let ivLength = 12
    /// The largest plaintext a record carries (2^14 bytes, §5.1).
    static let maxPlaintext = 1 << 14
    /// The largest ciphertext a record may carry (2^14 + 256, §5.2).
    static let maxCiphertext = (1 << 14) + 256

    let suite: Suite
    let sealing: Bool
    /// The next record's sequence number (its nonce); a connection never wraps it (§5.3).
    private(set) var sequence: UInt64
    /// Kept for the next generation's secret (KeyUpdate).
    private let trafficSecret: [UInt8]
    private let iv: [UInt8]
    private let context: OpaquePointer

    /// - Parameters:
    ///   - trafficSecret: the direction's `*_application_traffic_secret_N`.
    ///   - sealing: true to write records, false to read them.
    ///   - sequence: the number of records already protected with this secret.
    init(suite: Suite, trafficSecret: [UInt8], sealing: Bool, sequence: UInt64 = 0) throws(TLSError) {
        guard trafficSecret.count == suite.hashLength else {
            throw TLSError(.other, "a \(suite.hashLength)-byte traffic secret is needed, got \(trafficSecret.count) bytes")
        }
        let key = try Self.expandLabel(secret: trafficSecret, label: "key", length: suite.keyLength, suite: suite)
        self.iv = try Self.expandLabel(secret: trafficSecret, label: "iv", length: Self.ivLength, suite: suite)
        self.suite = suite
        self.sealing = sealing
        self.sequence = sequence
        self.trafficSecret = trafficSecret
        guard let cipher = EVP_CIPHER_fetch(nil, suite.cipherName, nil) else {
            throw TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "\(suite.cipherName) is not available"))
        }
        defer { EVP_CIPHER_free(cipher) }
        guard let context = EVP_CIPHER_CTX_new() else {
            throw TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "EVP_CIPHER_CTX_new failed"))
        }
        let keyed = key.withUnsafeBufferPointer { EVP_CipherInit_ex(context, cipher, nil, $0.baseAddress, nil, sealing ? 1 : 0) }
        guard keyed == 1 else {
            EVP_CIPHER_CTX_free(context)
            throw TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "keying \(suite.cipherName) failed"))
        }
        self.context = context
    }

    deinit {
        EVP_CIPHER_CTX_free(context)
    }

    /// HKDF-Expand-Label(secret, label, context, length) (§7.1) for lengths up to one hash
    /// (every traffic key, IV and next secret): HMAC(secret, HkdfLabel || 0x01), truncated.
    static func expandLabel(
        secret: [UInt8], label: String, context: [UInt8] = [], length: Int, suite: Suite
    ) throws(TLSError) -> [UInt8] {
        let fullLabel = Array("tls13 \(label)".utf8)
        precondition(length <= suite.hashLength && fullLabel.count <= 255 && context.count <= 255)
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xFF), UInt8(fullLabel.count)]
        info += fullLabel
        info.append(UInt8(context.count))
        info += context
        info.append(0x01)
        var output = [UInt8](repeating: 0, count: suite.hashLength)
        var written = 0
        let result = secret.withUnsafeBytes { key in
            info.withUnsafeBufferPointer { data in
                output.withUnsafeMutableBufferPointer { out in
                    EVP_Q_mac(
                        nil, "HMAC", nil, suite.digestName, nil, key.baseAddress, key.count, data.baseAddress, data.count,
                        out.baseAddress, out.count, &written)
                }
            }
        }
        guard result != nil, written == suite.hashLength else {
            throw TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "HKDF-Expand-Label \(label) failed"))
        }
        return Array(output.prefix(length))
    }

    /// The next traffic secret after a KeyUpdate (§7.2).
    static func nextTrafficSecret(after secret: [UInt8], suite: Suite) throws(TLSError) -> [UInt8] {
        try expandLabel(secret: secret, label: "traffic upd", length: suite.hashLength, suite: suite)
    }

    /// The secret `generations` KeyUpdates after `secret`.
    static func trafficSecret(_ secret: [UInt8], advancedBy generations: Int, suite: Suite) throws(TLSError) -> [UInt8] {
        var secret = secret
        for _ in 0..<generations { secret = try nextTrafficSecret(after: secret, suite: suite) }
        return secret
    }

    /// This direction's protection after a KeyUpdate: the next secret, sequence 0.
    func next() throws(TLSError) -> TLS13RecordProtection {
        try TLS13RecordProtection(
            suite: suite, trafficSecret: Self.nextTrafficSecret(after: trafficSecret, suite: suite), sealing: sealing)
    }

    /// Appends one record carrying `plaintext` (at most `maxPlaintext` bytes) as `contentType`,
    /// followed by `padding` zero bytes inside the encryption, to `output`: encrypted straight
    /// into `output`'s storage, no copy of the plaintext and no allocation beyond its growth.
    func seal(
        _ plaintext: UnsafeRawBufferPointer, contentType: ContentType = .applicationData, padding: Int = 0,
        into output: inout ByteBuffer
    ) throws(TLSError) {
        precondition(sealing, "a record protection made for reading cannot seal")
        let innerLength = plaintext.count + 1 + padding
        let recordLength = innerLength + Self.tagLength
        // TLSInnerPlaintext (content, type, padding) is at most 2^14 + 1 bytes (§5.4).
        guard plaintext.count <= Self.maxPlaintext, padding >= 0, innerLength <= Self.maxPlaintext + 1 else {
            throw TLSError(.other, "a record of \(plaintext.count) bytes with \(padding) of padding is too large")
        }
        var ok = setNonce()
        let context = context
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.headerLength + recordLength) { buffer in
            let record = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
            record[0] = ContentType.applicationData.rawValue
            record[1] = 0x03
            record[2] = 0x03
            record[3] = UInt8(recordLength >> 8)
            record[4] = UInt8(recordLength & 0xFF)
            let body = record + Self.headerLength
            var length: Int32 = 0
            ok = ok && EVP_CipherUpdate(context, nil, &length, record, Int32(Self.headerLength)) == 1
            if let input = plaintext.baseAddress, plaintext.count > 0 {
                ok = ok
                    && EVP_CipherUpdate(
                        context, body, &length, input.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) == 1
                    && Int(length) == plaintext.count
            }
            // The inner content type and the padding, encrypted in place after the plaintext.
            let tail = body + plaintext.count
            tail.initialize(repeating: 0, count: 1 + padding)
            tail[0] = contentType.rawValue
            ok = ok && EVP_CipherUpdate(context, tail, &length, tail, Int32(1 + padding)) == 1 && Int(length) == 1 + padding
            var final: Int32 = 0
            ok = ok && EVP_CipherFinal_ex(context, body + innerLength, &final) == 1 && final == 0
            ok = ok && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(Self.tagLength), body + innerLength) == 1
            return ok ? Self.headerLength + recordLength : 0
        }
        guard ok else { throw TLSError(.other, OpenSSLErrorQueue.drainedDescription(fallback: "sealing a record failed")) }
        sequence += 1
    }

    /// Opens one whole record (`record`: its 5-byte header and all of its ciphertext): its inner
    /// content type and plaintext without the padding. A record that does not authenticate, is
    /// malformed or carries no content type is an error; the sequence number moves only on success.
    func open(
        _ record: UnsafeRawBufferPointer, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(TLSError) -> (ContentType, ByteBuffer) {
        precondition(!sealing, "a record protection made for writing cannot open")
        guard record.count >= Self.headerLength + Self.tagLength + 1 else {
            throw TLSError(.other, "a protected record of \(record.count) bytes is too short")
        }
        let declared = Int(record[3]) << 8 | Int(record[4])
        guard record[0] == ContentType.applicationData.rawValue, record[1] == 0x03, record[2] == 0x03,
            declared == record.count - Self.headerLength, declared <= Self.maxCiphertext
        else {
            throw TLSError(.other, "a protected record's header is malformed")
        }
        let innerLength = declared - Self.tagLength
        let bytes = record.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var ok = setNonce()
        let context = context
        var plaintext = allocator.buffer(capacity: innerLength)
        plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: innerLength) { buffer in
            let out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var length: Int32 = 0
            ok = ok && EVP_CipherUpdate(context, nil, &length, bytes, Int32(Self.headerLength)) == 1
            ok = ok
                && EVP_CipherUpdate(context, out, &length, bytes + Self.headerLength, Int32(innerLength)) == 1
                && Int(length) == innerLength
            let tag = UnsafeMutableRawPointer(mutating: bytes + Self.headerLength + innerLength)
            ok = ok && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagLength), tag) == 1
            var final: Int32 = 0
            ok = ok && EVP_CipherFinal_ex(context, out + innerLength, &final) == 1
            return ok ? innerLength : 0
        }
        guard ok else {
            _ = OpenSSLErrorQueue.drain()
            throw TLSError(.other, "a protected record did not authenticate")
        }
        // The content type is the last non-zero byte; the zeros after it are padding (§5.4).
        let view = plaintext.readableBytesView
        guard let typeIndex = view.lastIndex(where: { $0 != 0 }) else {
            throw TLSError(.other, "a protected record carries no content type")
        }
        guard let type = ContentType(rawValue: view[typeIndex]) else {
            throw TLSError(.other, "a protected record carries content type \(view[typeIndex])")
        }
        guard typeIndex <= Self.maxPlaintext else {
            throw TLSError(.other, "a protected record carries \(typeIndex) bytes, more than 2^14 (record_overflow)")
        }
        plaintext.moveWriterIndex(to: typeIndex)
        sequence += 1
        return (type, plaintext)
    }

    /// Sets this record's nonce: the IV with the sequence number XORed into its last 8 bytes (§5.3).
    private func setNonce() -> Bool {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.ivLength) { nonce in
            for index in 0..<Self.ivLength { nonce[index] = iv[index] }
            for index in 0..<8 {
                nonce[Self.ivLength - 1 - index] ^= UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(index)))
            }
            return EVP_CipherInit_ex(context, nil, nil, nil, nonce.baseAddress, -1) == 1
        }
    }
}
