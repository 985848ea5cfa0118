import Foundation

/// The parts of etcd's JSON gateway messages the store reads. The gateway writes proto3 JSON:
/// int64 as strings, bytes as base64, and leaves out fields at their default (an event of type
/// PUT has no `type`, a failed txn no `succeeded`).
public struct EtcdHeader: Decodable, Sendable {
    public var revision: Int64

    enum CodingKeys: String, CodingKey { case revision }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        revision = try container.int64(.revision)
    }
}

public struct EtcdKeyValue: Decodable, Sendable, Equatable {
    public var key: String
    public var value: Data
    public var modRevision: Int64
    public var createRevision: Int64
    public var lease: Int64

    enum CodingKeys: String, CodingKey {
        case key, value, lease
        case modRevision = "mod_revision"
        case createRevision = "create_revision"
    }

    public init(key: String, value: Data, modRevision: Int64, createRevision: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.modRevision = modRevision
        self.createRevision = createRevision
        self.lease = lease
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = String(decoding: try container.decodeIfPresent(Data.self, forKey: .key) ?? Data(), as: UTF8.self)
        value = try container.decodeIfPresent(Data.self, forKey: .value) ?? Data()
        modRevision = try container.int64(.modRevision)
        createRevision = try container.int64(.createRevision)
        lease = try container.int64(.lease)
    }
}

public struct EtcdRangeResponse: Decodable, Sendable {
    public var header: EtcdHeader
    public var kvs: [EtcdKeyValue]

    enum CodingKeys: String, CodingKey { case header, kvs }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.decode(EtcdHeader.self, forKey: .header)
        kvs = try container.decodeIfPresent([EtcdKeyValue].self, forKey: .kvs) ?? []
    }
}

public struct EtcdTxnResponse: Decodable, Sendable {
    public var header: EtcdHeader
    public var succeeded: Bool
    /// The `response_range` answers of the branch that ran, in order (others are empty).
    public var ranges: [[EtcdKeyValue]]

    enum CodingKeys: String, CodingKey { case header, succeeded, responses }
    struct Op: Decodable {
        var response_range: Range?
    }
    struct Range: Decodable {
        var kvs: [EtcdKeyValue]?
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.decode(EtcdHeader.self, forKey: .header)
        succeeded = try container.decodeIfPresent(Bool.self, forKey: .succeeded) ?? false
        ranges = (try container.decodeIfPresent([Op].self, forKey: .responses) ?? []).map { $0.response_range?.kvs ?? [] }
    }
}

public struct EtcdDeleteResponse: Decodable, Sendable {
    public var header: EtcdHeader
    public var deleted: Int64

    enum CodingKeys: String, CodingKey { case header, deleted }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.decode(EtcdHeader.self, forKey: .header)
        deleted = try container.int64(.deleted)
    }
}

public struct EtcdLeaseGrantResponse: Decodable, Sendable {
    public var id: Int64
    public var ttl: Int64

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case ttl = "TTL"
        case error
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.int64(.id)
        ttl = try container.int64(.ttl)
    }
}

/// `/v3/lease/keepalive` answers one streamed message: `{"result": {"ID", "TTL"}}`; TTL 0 (or
/// absent) means the lease is gone.
public struct EtcdKeepAliveResponse: Decodable, Sendable {
    public var result: EtcdLeaseGrantResponse?
}

/// One message of a watch stream.
public struct EtcdWatchMessage: Decodable, Sendable {
    public struct Event: Decodable, Sendable {
        public var isDelete: Bool
        public var kv: EtcdKeyValue

        enum CodingKeys: String, CodingKey { case type, kv }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            isDelete = try container.decodeIfPresent(String.self, forKey: .type) == "DELETE"
            kv = try container.decode(EtcdKeyValue.self, forKey: .kv)
        }
    }

    public var revision: Int64
    public var created: Bool
    public var canceled: Bool
    public var compactRevision: Int64
    public var events: [Event]

    enum CodingKeys: String, CodingKey {
        case header, created, canceled, events
        case compactRevision = "compact_revision"
    }
    struct OptionalHeader: Decodable {
        var revision: String?
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        revision = Int64(try container.decodeIfPresent(OptionalHeader.self, forKey: .header)?.revision ?? "0") ?? 0
        created = try container.decodeIfPresent(Bool.self, forKey: .created) ?? false
        canceled = try container.decodeIfPresent(Bool.self, forKey: .canceled) ?? false
        compactRevision = try container.int64(.compactRevision)
        events = try container.decodeIfPresent([Event].self, forKey: .events) ?? []
    }
}

struct EtcdWatchEnvelope: Decodable {
    var result: EtcdWatchMessage?
}

extension KeyedDecodingContainer {
    /// A proto3 int64: a JSON string (or number), absent meaning 0.
    func int64(_ key: Key) throws -> Int64 {
        if let text = try? decodeIfPresent(String.self, forKey: key) { return Int64(text) ?? 0 }
        return try decodeIfPresent(Int64.self, forKey: key) ?? 0
    }
}
