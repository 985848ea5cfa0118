import Foundation
import GRDB
import SidecarCore

/// The embedded `ResourceStore`: one SQLite file (`mesh.sqlite`) in WAL mode through GRDB.
///
/// Each resource is one row holding its canonical JSON (without `resourceVersion`, which lives
/// in its own column); the global counter is one row of `meta`. Every mutation runs in one
/// write transaction, so a `kill -9` at any moment leaves either the whole apply or none of it,
/// and SQLite's journal makes every acknowledged commit survive a crash of the process.
/// Thread-safe: GRDB's pool serializes writers and lets readers run concurrently.
public final class SQLiteResourceStore: ResourceStore {
    public let path: String
    private let pool: DatabasePool

    public init(path: String) throws(StoreError) {
        self.path = path
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            pool = try DatabasePool(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.execute(sql: """
                    CREATE TABLE resources (
                        kind TEXT NOT NULL,
                        name TEXT NOT NULL,
                        service TEXT NOT NULL,
                        version INTEGER NOT NULL,
                        body TEXT NOT NULL,
                        PRIMARY KEY (kind, name)
                    );
                    CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
                    INSERT INTO meta (key, value) VALUES ('version', 0);
                    CREATE TABLE join_tokens (
                        secret_hash TEXT PRIMARY KEY NOT NULL,
                        service TEXT NOT NULL,
                        expires_at INTEGER
                    );
                    """)
            }
            migrator.registerMigration("v2 registrations") { db in
                try db.execute(sql: """
                    CREATE TABLE registrations (
                        name TEXT PRIMARY KEY NOT NULL,
                        body TEXT NOT NULL,
                        dependencies TEXT
                    );
                    """)
            }
            migrator.registerMigration("v3 join token lifetimes") { db in
                try Self.migrateJoinTokens(db, now: Int64(Date().timeIntervalSince1970))
            }
            try migrator.migrate(pool)
            // Fails fast on a damaged file instead of at the first request.
            try pool.read { db in
                let result = try String.fetchOne(db, sql: "PRAGMA quick_check") ?? "no answer"
                guard result == "ok" else { throw StoreError.storage("\(path): integrity check failed: \(result)") }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.storage("\(path): \(error)")
        }
    }

    public func currentVersion() throws(StoreError) -> Int64 {
        try run { try pool.read { db in try Self.version(db) } }
    }

    public func apply(_ resources: [MeshResource]) throws(StoreError) -> [MeshResource] {
        try run {
            try pool.write { db in
                var version = try Self.version(db)
                var stored: [MeshResource] = []
                for resource in resources {
                    let body = resource.withResourceVersion(nil).json
                    let existing = try Row.fetchOne(
                        db, sql: "SELECT version, body FROM resources WHERE kind = ? AND name = ?",
                        arguments: [resource.kind.rawValue, resource.name])
                    let existingVersion: Int64? = existing?["version"]
                    if let wanted = resource.resourceVersion {
                        guard let existingVersion else {
                            throw StoreError.conflict(
                                "\(resource.kind) \(resource.name): resourceVersion \(wanted) given but it does not exist; "
                                    + "drop resourceVersion to create it")
                        }
                        guard wanted == String(existingVersion) else {
                            throw StoreError.conflict(
                                "\(resource.kind) \(resource.name): resourceVersion \(wanted) is stale (now \(existingVersion)); "
                                    + "get it again, re-apply your change, or drop resourceVersion to overwrite")
                        }
                    }
                    // An unchanged resource keeps its version: re-applying a file pushes nothing.
                    if let existingVersion, existing?["body"] == body {
                        stored.append(resource.withResourceVersion(String(existingVersion)))
                        continue
                    }
                    version += 1
                    try db.execute(
                        sql: """
                            INSERT INTO resources (kind, name, service, version, body) VALUES (?, ?, ?, ?, ?)
                            ON CONFLICT (kind, name) DO UPDATE SET service = excluded.service,
                                version = excluded.version, body = excluded.body
                            """,
                        arguments: [resource.kind.rawValue, resource.name, resource.service, version, body])
                    stored.append(resource.withResourceVersion(String(version)))
                }
                try Self.setVersion(db, version)
                return stored
            }
        }
    }

    public func list(kind: ResourceKind?) throws(StoreError) -> [MeshResource] {
        let rows = try run {
            try pool.read { db in
                if let kind {
                    return try Row.fetchAll(
                        db, sql: "SELECT version, body FROM resources WHERE kind = ? ORDER BY name",
                        arguments: [kind.rawValue])
                }
                return try Row.fetchAll(db, sql: "SELECT version, body FROM resources ORDER BY kind, name")
            }
        }
        return try rows.map { row throws(StoreError) in try Self.decode(row) }
    }

    public func get(kind: ResourceKind, name: String) throws(StoreError) -> MeshResource? {
        let row = try run {
            try pool.read { db in
                try Row.fetchOne(
                    db, sql: "SELECT version, body FROM resources WHERE kind = ? AND name = ?",
                    arguments: [kind.rawValue, name])
            }
        }
        guard let row else { return nil }
        return try Self.decode(row)
    }

    public func delete(kind: ResourceKind, name: String) throws(StoreError) {
        try run {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM resources WHERE kind = ? AND name = ?", arguments: [kind.rawValue, name])
                guard db.changesCount > 0 else { throw StoreError.notFound("\(kind) \"\(name)\" not found") }
                try Self.setVersion(db, try Self.version(db) + 1)
            }
        }
    }

    public func recordRegistryChange(saving: [Registration], removing: [String]) throws(StoreError) -> Int64 {
        try run {
            try pool.write { db in
                for registration in saving {
                    // Service names hold no comma, so a comma-joined list is unambiguous.
                    try db.execute(
                        sql: """
                            INSERT INTO registrations (name, body, dependencies) VALUES (?, ?, ?)
                            ON CONFLICT (name) DO UPDATE SET body = excluded.body, dependencies = excluded.dependencies
                            """,
                        arguments: [
                            registration.instance.name, MeshResource.instance(registration.instance).json,
                            registration.dependencies?.joined(separator: ","),
                        ])
                }
                for name in removing {
                    try db.execute(sql: "DELETE FROM registrations WHERE name = ?", arguments: [name])
                }
                let next = try Self.version(db) + 1
                try Self.setVersion(db, next)
                return next
            }
        }
    }

    public func registrations() throws(StoreError) -> [Registration] {
        let rows = try run {
            try pool.read { db in try Row.fetchAll(db, sql: "SELECT body, dependencies FROM registrations ORDER BY name") }
        }
        return try rows.map { row throws(StoreError) in
            guard case .instance(let instance) = try Self.decode(body: row["body"]) else {
                throw StoreError.storage("\(path): a stored registration is not an Instance")
            }
            let dependencies: String? = row["dependencies"]
            return Registration(
                instance: instance,
                dependencies: dependencies.map { $0.isEmpty ? [] : $0.split(separator: ",").map(String.init) })
        }
    }

    public func saveJoinToken(_ token: JoinToken) throws(StoreError) {
        try run {
            try pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO join_tokens (id, secret_hash, service, expires_at, uses_left, revoked)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [token.id, token.secretHash, token.service, token.expiresAt, token.usesLeft, token.revoked])
            }
        }
    }

    public func joinToken(secretHash: String) throws(StoreError) -> JoinToken? {
        try run {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM join_tokens WHERE secret_hash = ?", arguments: [secretHash])
                    .map(Self.joinToken)
            }
        }
    }

    public func joinTokens() throws(StoreError) -> [JoinToken] {
        try run {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM join_tokens ORDER BY service, expires_at, id").map(Self.joinToken)
            }
        }
    }

    public func revokeJoinToken(id: String) throws(StoreError) -> JoinToken {
        try run {
            try pool.write { db in
                try db.execute(sql: "UPDATE join_tokens SET revoked = 1 WHERE id = ?", arguments: [id])
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM join_tokens WHERE id = ?", arguments: [id]) else {
                    throw StoreError.notFound("join token \"\(id)\" not found")
                }
                return Self.joinToken(row)
            }
        }
    }

    public func consumeJoinToken(id: String, now: Int64) throws(StoreError) -> JoinTokenUse {
        try run {
            // One write transaction: SQLite has one writer at a time, so the check and the
            // decrement cannot interleave with another use of the same token.
            try pool.write { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM join_tokens WHERE id = ?", arguments: [id]) else {
                    return .unknown
                }
                var token = Self.joinToken(row)
                let state = token.state(now: now)
                guard state == .active else { return .refused(token, state) }
                if let usesLeft = token.usesLeft {
                    try db.execute(
                        sql: "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0", arguments: [id])
                    token.usesLeft = usesLeft - 1
                }
                return .consumed(token)
            }
        }
    }

    /// v1 and v2 kept `secret_hash`, `service` and an optional `expires_at`. v3 adds a public
    /// id, a use count and revocation, and makes every token expire: a token that had no
    /// expiry gets the default lifetime from the upgrade on. A `secret_hash` that is not a
    /// SHA-256 hex digest can only be a secret stored in plain text: it is hashed here.
    static func migrateJoinTokens(_ db: Database, now: Int64) throws {
        try db.execute(sql: """
            CREATE TABLE join_tokens_v3 (
                id TEXT PRIMARY KEY NOT NULL,
                secret_hash TEXT NOT NULL UNIQUE,
                service TEXT NOT NULL,
                expires_at INTEGER NOT NULL,
                uses_left INTEGER,
                revoked INTEGER NOT NULL DEFAULT 0
            );
            """)
        let rows = try Row.fetchAll(db, sql: "SELECT secret_hash, service, expires_at FROM join_tokens")
        for row in rows {
            let stored: String = row["secret_hash"]
            let isDigest = stored.utf8.count == 64 && stored.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
            let expiresAt: Int64? = row["expires_at"]
            try db.execute(
                sql: "INSERT OR IGNORE INTO join_tokens_v3 (id, secret_hash, service, expires_at) VALUES (?, ?, ?, ?)",
                arguments: [
                    JoinToken.makeID(), isDigest ? stored : DataDirectory.hash(stored), row["service"] as String,
                    expiresAt ?? now + JoinToken.defaultLifetimeSeconds,
                ])
        }
        try db.execute(sql: """
            DROP TABLE join_tokens;
            ALTER TABLE join_tokens_v3 RENAME TO join_tokens;
            """)
    }

    private static func joinToken(_ row: Row) -> JoinToken {
        JoinToken(
            id: row["id"], secretHash: row["secret_hash"], service: row["service"], expiresAt: row["expires_at"],
            usesLeft: row["uses_left"], revoked: row["revoked"])
    }

    // MARK: Internals

    private static func version(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'version'") ?? 0
    }

    private static func setVersion(_ db: Database, _ version: Int64) throws {
        try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'version'", arguments: [version])
    }

    private static func decode(_ row: Row) throws(StoreError) -> MeshResource {
        let version: Int64 = row["version"]
        return try decode(body: row["body"]).withResourceVersion(String(version))
    }

    private static func decode(body: String) throws(StoreError) -> MeshResource {
        do {
            guard let resource = try MeshResourceDecoder.decodeJSON(body).first else {
                throw StoreError.storage("stored resource is empty")
            }
            return resource
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.storage("a stored resource no longer decodes: \(error)")
        }
    }

    /// Runs a GRDB call, passing `StoreError`s through and naming the file on database errors.
    private func run<T>(_ body: () throws -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.storage("\(path): \(error)")
        }
    }
}
