
/// Turns operator input (multi-document YAML for `control-plane apply`, a JSON body for the
/// API) into validated `MeshResource`s, or one `ConfigError` listing every problem found.
///
/// Issue paths start with the document (`document 2 (Route payments): rules[0].timeout`);
/// lines are those of the input text. Nothing here traps on input.
public enum MeshResourceDecoder {
    /// Every resource in a `---`-separated YAML stream, in order. Empty documents are skipped.
    public static func decodeDocuments(yaml: String, fileName: String? = nil) throws(ConfigError) -> [MeshResource] {
        let reader = ConfigReader(file: fileName)
        var roots: [YAMLNode] = []
        do {
            let parser = try YAMLParser(yaml: yaml)
            while let root = try parser.nextRoot() {
                roots.append(root)
            }
        } catch {
            throw ConfigError(issueForYAMLError(error, file: fileName))
        }
        var decoded: [DecodedResource] = []
        for root in roots {
            if let issue = ConfigReader.sizeIssue(root, file: fileName) { throw ConfigError(issue) }
        }
        for (index, root) in roots.enumerated() where !ConfigReader.isNull(root) {
            let label = documentLabel(index: index, root: root)
            let start = reader.issues.count
            if let resource = MeshResource.decode(root, path: "", reader: reader) {
                decoded.append(DecodedResource(resource: resource, label: label, node: root))
            }
            reader.prefixIssues(from: start, with: label)
        }
        checkUnique(decoded, reader: reader)
        if let error = reader.error() { throw error }
        return decoded.map(\.resource)
    }

    /// A JSON body: one resource object, or an array of them. JSON is read as YAML 1.2 flow
    /// text, so issues carry lines too; paths start with `[i]` for arrays.
    public static func decodeJSON(_ json: String, fileName: String? = nil) throws(ConfigError) -> [MeshResource] {
        // JSON forbids raw tabs inside strings, so every tab is whitespace; libyaml refuses
        // tabs as indentation, so they become spaces.
        let text = json.replacingTabs()
        let reader = ConfigReader(file: fileName)
        let root: YAMLNode?
        do {
            root = try YAMLParser.compose(yaml: text)
        } catch {
            throw ConfigError(issueForYAMLError(error, file: fileName))
        }
        guard let root, !ConfigReader.isNull(root) else {
            throw ConfigError(ConfigIssue(file: fileName, path: "", message: "expected a resource object, got nothing"))
        }
        if let issue = ConfigReader.sizeIssue(root, file: fileName) { throw ConfigError(issue) }
        var decoded: [DecodedResource] = []
        if let elements = root.sequence {
            for (index, element) in elements.enumerated() {
                let path = "[\(index)]"
                if let resource = MeshResource.decode(element, path: path, reader: reader) {
                    decoded.append(DecodedResource(resource: resource, label: path, node: element))
                }
            }
        } else if let resource = MeshResource.decode(root, path: "", reader: reader) {
            decoded.append(DecodedResource(resource: resource, label: "", node: root))
        }
        checkUnique(decoded, reader: reader)
        if let error = reader.error() { throw error }
        return decoded.map(\.resource)
    }

    // MARK: Shared with SidecarConfiguration

    struct DecodedResource {
        var resource: MeshResource
        /// How issues name it: `document 2 (Route payments)` or `resources[1]`.
        var label: String
        var node: YAMLNode
    }

    /// Names are unique per kind, and a service has at most one Route, TrafficPolicy and
    /// AuthorizationPolicy.
    static func checkUnique(_ resources: [DecodedResource], reader: ConfigReader) {
        var byName: [String: DecodedResource] = [:]
        var byService: [String: DecodedResource] = [:]
        for item in resources {
            let resource = item.resource
            let nameKey = "\(resource.kind)/\(resource.name)"
            if let first = byName[nameKey] {
                reader.report("duplicate \(resource.kind) name \"\(resource.name)\" (first in \(first.label))",
                              path: item.label, at: item.node)
                continue
            }
            byName[nameKey] = item
            guard [.route, .trafficPolicy, .authorizationPolicy].contains(resource.kind) else { continue }
            let serviceKey = "\(resource.kind)/\(resource.service)"
            if let first = byService[serviceKey] {
                reader.report("a second \(resource.kind) for service \"\(resource.service)\" (first in \(first.label)); "
                              + "merge their rules into one", path: item.label, at: item.node)
                continue
            }
            byService[serviceKey] = item
        }
    }

    /// A YAML syntax error as one issue with its line (also for wire types in MeshAPI).
    package static func issueForYAMLError(_ error: YAMLError, file: String?) -> ConfigIssue {
        switch error.kind {
        case .scanner, .parser, .composer:
            // libyaml's context says what was open ("while parsing a flow mapping") and where.
            var detail = error.context.map { " \($0.text)" } ?? ""
            if let context = error.context, let mark = error.mark, context.mark.line != mark.line {
                detail += " started at line \(context.mark.line)"
            }
            return ConfigIssue(file: file, line: error.mark?.line, column: error.mark?.column, path: "",
                               message: "invalid YAML: \(error.problem)\(detail)")
        case .reader:
            return ConfigIssue(file: file, path: "", message: "invalid YAML: \(error.problem)")
        case .duplicateKeys(let duplicates):
            let keys = duplicates.map { "\"\($0)\"" }.joined(separator: ", ")
            return ConfigIssue(file: file, line: error.mark?.line, column: error.mark?.column, path: "",
                               message: "invalid YAML: duplicate key \(keys) in one mapping")
        case .memory:
            return ConfigIssue(file: file, path: "", message: "invalid YAML: \(error.problem)")
        }
    }

    /// `document 2 (Route payments)`: 1-based, with what the document says it is, if readable.
    private static func documentLabel(index: Int, root: YAMLNode) -> String {
        let label = "document \(index + 1)"
        guard let kind = root["kind"]?.scalar?.string else { return label }
        let name = root["name"]?.scalar?.string ?? root["service"]?.scalar?.string
        return name.map { "\(label) (\(kind) \($0))" } ?? "\(label) (\(kind))"
    }
}

extension String {
    /// JSON forbids raw tabs inside strings, so every tab is whitespace; libyaml refuses tabs as
    /// indentation, so JSON read as YAML gets spaces instead.
    package func replacingTabs() -> String {
        String(map { $0 == "\t" ? " " : $0 })
    }
}
