import SidecarCore

/// What one service's sidecar receives from the control plane: its own inbound policy and, for
/// every service it calls, the Route, TrafficPolicy, Service and healthy Instances; stamped with
/// the global version it was computed at. Immutable.
///
/// The one wire type both ends use: the control plane computes it (`compute`, in ControlPlane)
/// and encodes it (`json`); the sidecar decodes it (`decode(json:)`), validating every resource
/// like an applied one. The wire form is JSON `{"service": S, "version": "N", "resources": [...]}`
/// with resources in their config form.
public struct MeshSnapshot: Sendable, Equatable {
    public var service: String
    public var version: Int64
    public var resources: [MeshResource]

    public init(service: String, version: Int64, resources: [MeshResource]) {
        self.service = service
        self.version = version
        self.resources = resources
    }

    /// The wire form.
    public var json: String {
        let list = MeshResource.json(resources)
        return "{\"service\":\(ConfigValue.quoted(service)),\"version\":\"\(version)\",\"resources\":\(list)}"
    }

    /// Decodes a snapshot body; every resource is validated like an applied one, so a snapshot
    /// a sidecar cannot understand is refused whole (and its running config kept). Issues name
    /// the file `snapshot` and paths `resources[i]`.
    public static func decode(json: String) throws(ConfigError) -> MeshSnapshot {
        let file = "snapshot"
        let root: YAMLNode?
        do {
            root = try YAMLParser.compose(yaml: json.replacingTabs())
        } catch {
            throw ConfigError(MeshResourceDecoder.issueForYAMLError(error, file: file))
        }
        guard let root, let map = root.mapping else {
            throw ConfigError(ConfigIssue(file: file, path: "", message: "expected a snapshot object"))
        }
        guard let service = map["service"]?.string, let versionText = map["version"]?.string,
            let version = Int64(versionText)
        else {
            throw ConfigError(ConfigIssue(file: file, path: "", message: "a snapshot needs service and a numeric version"))
        }
        let reader = ConfigReader(file: file)
        var resources: [MeshResource] = []
        for (index, element) in (map["resources"]?.sequence ?? []).enumerated() {
            if let resource = MeshResource.decode(element, path: "resources[\(index)]", reader: reader) {
                resources.append(resource)
            }
        }
        if let error = reader.error() { throw error }
        return MeshSnapshot(service: service, version: version, resources: resources)
    }
}
