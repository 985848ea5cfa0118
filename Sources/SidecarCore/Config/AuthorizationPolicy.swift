/// An `AuthorizationPolicy` resource: which caller services may call one destination
/// service, optionally narrowed by method and path prefix.
///
/// A request is allowed if any `allow` rule matches it, otherwise `defaultAction` applies.
/// `name` defaults to `service`. A service with no policy allows every authenticated caller;
/// a policy that omits `default` denies (see `MeshDefaults`).
public struct AuthorizationPolicy: Sendable, Equatable {
    public enum Action: String, Sendable, Equatable, CaseIterable {
        case allow
        case deny
    }

    /// One allow rule; every present field must match.
    public struct Rule: Sendable, Equatable {
        /// Caller service names (from the verified certificate); empty means any caller.
        public var from: [String]
        /// Upper-case methods; empty means any.
        public var methods: [String]
        public var pathPrefix: String?

        public init(from: [String] = [], methods: [String] = [], pathPrefix: String? = nil) {
            self.from = from
            self.methods = methods
            self.pathPrefix = pathPrefix
        }
    }

    public var name: String
    public var resourceVersion: String?
    public var service: String
    public var defaultAction: Action
    public var allow: [Rule]

    public init(
        name: String? = nil,
        resourceVersion: String? = nil,
        service: String,
        defaultAction: Action = MeshDefaults.authorizationPolicyDefault,
        allow: [Rule] = []
    ) {
        self.name = name ?? service
        self.resourceVersion = resourceVersion
        self.service = service
        self.defaultAction = defaultAction
        self.allow = allow
    }
}
