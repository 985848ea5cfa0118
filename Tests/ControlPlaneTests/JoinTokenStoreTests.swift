import ControlPlane
import Foundation
import GRDB
import MeshTestSupport
import SidecarCore
import Testing

/// Join tokens in the SQLite store: only hashes, uses taken atomically, revocation, and the
/// migration of a store written by the previous schema.
@Suite struct JoinTokenStoreTests {
    let directory = TemporaryDirectory()
    var path: String { directory.path + "/mesh.sqlite" }
    let now: Int64 = 1_900_000_000

    @Test func usesAreTakenOneByOneAndRefusalsSayWhy() throws {
        defer { directory.remove() }
        let store = try SQLiteResourceStore(path: path)
        let twice = JoinToken(secretHash: DataDirectory.hash("s1"), service: "web", expiresAt: now + 60, usesLeft: 2)
        try store.saveJoinToken(twice)
        guard case .consumed(let first) = try store.consumeJoinToken(id: twice.id, now: now) else {
            Issue.record("first use refused")
            return
        }
        #expect(first.usesLeft == 1)
        #expect(try store.consumeJoinToken(id: twice.id, now: now) == .consumed(JoinToken(
            id: twice.id, secretHash: twice.secretHash, service: "web", expiresAt: now + 60, usesLeft: 0)))
        guard case .refused(_, .usedUp) = try store.consumeJoinToken(id: twice.id, now: now) else {
            Issue.record("a third use was not refused as used up")
            return
        }

        let unlimited = JoinToken(secretHash: DataDirectory.hash("s2"), service: "web", expiresAt: now + 60)
        try store.saveJoinToken(unlimited)
        for _ in 0..<3 { #expect(try store.consumeJoinToken(id: unlimited.id, now: now) == .consumed(unlimited)) }
        guard case .refused(_, .expired) = try store.consumeJoinToken(id: unlimited.id, now: now + 60) else {
            Issue.record("an expired token was not refused as expired")
            return
        }
        let revoked = try store.revokeJoinToken(id: unlimited.id)
        #expect(revoked.revoked && revoked.state(now: now) == .revoked)
        guard case .refused(_, .revoked) = try store.consumeJoinToken(id: unlimited.id, now: now) else {
            Issue.record("a revoked token was not refused as revoked")
            return
        }
        #expect(try store.consumeJoinToken(id: "nope", now: now) == .unknown)
        #expect(throws: StoreError.self) { try store.revokeJoinToken(id: "nope") }
        #expect(try store.joinTokens().map(\.id).sorted() == [twice.id, unlimited.id].sorted())
        #expect(try store.joinToken(secretHash: DataDirectory.hash("s1"))?.usesLeft == 0)
    }

    /// Two stores over one file are two writers, as two processes or two threads are: of 16
    /// concurrent uses of a 1-use token exactly one succeeds.
    @Test func concurrentUsesOfAOneUseTokenTakeItOnce() async throws {
        defer { directory.remove() }
        let stores = [try SQLiteResourceStore(path: path), try SQLiteResourceStore(path: path)]
        let token = JoinToken(secretHash: DataDirectory.hash("once"), service: "web", expiresAt: now + 60, usesLeft: 1)
        try stores[0].saveJoinToken(token)
        let consumed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<16 {
                let store = stores[index % 2]
                let now = now
                group.addTask {
                    if case .consumed = try store.consumeJoinToken(id: token.id, now: now) { return true }
                    return false
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(consumed == 1)
        #expect(try stores[1].joinToken(secretHash: token.secretHash)?.usesLeft == 0)
    }

    /// A store written by the previous version (schema v1 + v2: tokens without id, uses or
    /// revocation, some never expiring) opens; every token gets an id and an expiry, hashed
    /// ones are found by the same secret, and a plain-text secret is hashed.
    @Test func aStoreFromThePreviousVersionIsMigrated() throws {
        defer { directory.remove() }
        let legacy = try DatabaseQueue(path: path)
        try legacy.write { db in
            try db.execute(sql: """
                CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                INSERT INTO grdb_migrations VALUES ('v1'), ('v2 registrations');
                CREATE TABLE resources (
                    kind TEXT NOT NULL, name TEXT NOT NULL, service TEXT NOT NULL, version INTEGER NOT NULL,
                    body TEXT NOT NULL, PRIMARY KEY (kind, name));
                CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
                INSERT INTO meta (key, value) VALUES ('version', 3);
                CREATE TABLE join_tokens (secret_hash TEXT PRIMARY KEY NOT NULL, service TEXT NOT NULL, expires_at INTEGER);
                CREATE TABLE registrations (name TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, dependencies TEXT);
                """)
            try db.execute(
                sql: "INSERT INTO join_tokens VALUES (?, 'web', NULL), (?, 'payments', 1234), ('plain-secret', 'ledger', NULL)",
                arguments: [DataDirectory.hash("forever"), DataDirectory.hash("dated")])
        }
        try legacy.close()

        let before = Int64(Date().timeIntervalSince1970)
        let store = try SQLiteResourceStore(path: path)
        #expect(try store.currentVersion() == 3)
        let forever = try #require(try store.joinToken(secretHash: DataDirectory.hash("forever")))
        #expect(forever.service == "web" && forever.id.count == 16 && forever.usesLeft == nil && !forever.revoked)
        #expect((before + JoinToken.defaultLifetimeSeconds...before + JoinToken.defaultLifetimeSeconds + 60).contains(forever.expiresAt),
                "a token that never expired gets the default lifetime from the upgrade on")
        #expect(try store.joinToken(secretHash: DataDirectory.hash("dated"))?.expiresAt == 1234)
        let plain = try #require(try store.joinToken(secretHash: DataDirectory.hash("plain-secret")))
        #expect(plain.service == "ledger")
        #expect(try store.joinToken(secretHash: "plain-secret") == nil, "no secret is left in plain text")
        #expect(Set(try store.joinTokens().map(\.id)).count == 3)
        // And it opens again without migrating twice.
        let reopened = try SQLiteResourceStore(path: path)
        #expect(try reopened.joinToken(secretHash: DataDirectory.hash("forever")) == forever)
    }
}
