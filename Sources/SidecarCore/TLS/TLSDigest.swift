import COpenSSL

/// SHA-256 through OpenSSL (`EVP_Digest`), for checksums outside the handshake (a dynamic
/// sidecar's state file), so the sidecar needs no other crypto library for them.
public enum TLSDigest {
    /// The 32-byte SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        // SHA-256 over memory fails only when OpenSSL cannot allocate its context.
        precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed")
        return digest
    }
}
