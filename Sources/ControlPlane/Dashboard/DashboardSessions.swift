import Crypto
import Foundation
import Synchronization

/// The dashboard's signed-in sessions as self-contained signed tokens (the cookie's value):
/// `v1.<expiry, Unix seconds>.<random 128-bit id>.<HMAC-SHA256 of the rest>`. The key is
/// derived (HKDF) from the admin token, which every replica over one store shares: a session
/// minted by one replica is accepted by every other, and by this one after a restart, with
/// nothing stored. Changing the admin token ends every session.
///
/// Sign-out: the browser drops the cookie, and the replica that took the sign-out refuses the
/// token until it expires (in memory; other replicas would still accept a copied value until
/// its expiry, as with any bearer token). Thread-safe behind one mutex; time is passed in by
/// the caller (Unix seconds), so tests move a clock.
public final class DashboardSessions: Sendable {
    private let key: SymmetricKey
    /// Ended sessions' ids and their expiries; pruned as they pass.
    private let ended = Mutex<[String: Int64]>([:])
    public let lifetime: Duration

    public init(secret: String, lifetime: Duration = .seconds(12 * 3600)) {
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Data(secret.utf8)), info: Data("mesh dashboard sessions v1".utf8),
            outputByteCount: 32)
        self.lifetime = lifetime
    }

    public static func unixNow() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// A new session valid for `lifetime` from `now`.
    public func create(now: Int64 = DashboardSessions.unixNow()) -> String {
        var generator = SystemRandomNumberGenerator()
        let id = (0..<2).map { _ in Self.hex(generator.next() as UInt64) }.joined()
        let payload = "v1.\(now + lifetime.components.seconds).\(id)"
        return payload + "." + signature(payload)
    }

    public func isValid(_ token: String?, now: Int64 = DashboardSessions.unixNow()) -> Bool {
        guard let (id, expiry) = verified(token), expiry > now else { return false }
        return ended.withLock { $0[id] == nil }
    }

    public func end(_ token: String?, now: Int64 = DashboardSessions.unixNow()) {
        guard let (id, expiry) = verified(token) else { return }
        ended.withLock { ended in
            ended = ended.filter { $0.value > now }
            ended[id] = expiry
        }
    }

    /// The id and expiry of a token this key signed; nil for anything else.
    private func verified(_ token: String?) -> (id: String, expiry: Int64)? {
        guard let token, token.utf8.count < 200 else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "v1", let expiry = Int64(parts[1]), let mac = Self.bytes(hex: parts[3]) else { return nil }
        let payload = parts[0..<3].joined(separator: ".")
        // Compared in constant time by Crypto.
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data(payload.utf8), using: key) else { return nil }
        return (String(parts[2]), expiry)
    }

    private func signature(_ payload: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(payload.utf8), using: key).map { Self.hex($0) }.joined()
    }

    private static func hex<Word: FixedWidthInteger>(_ word: Word) -> String {
        let text = String(word, radix: 16)
        return String(repeating: "0", count: Word.bitWidth / 4 - text.count) + text
    }

    private static func bytes(hex: Substring) -> [UInt8]? {
        guard hex.utf8.count == 64 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}
