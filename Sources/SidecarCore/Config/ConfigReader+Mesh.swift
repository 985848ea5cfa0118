
/// Mesh-specific value rules shared by every resource decoder: service and resource names,
/// HTTP methods, header names, paths, label subsets.
extension ConfigReader {
    static let serviceNameRule = ServiceName.rule

    static func isServiceName(_ text: String) -> Bool { ServiceName.isValid(text) }

    func serviceName(_ node: YAMLNode, path: String) -> String? {
        guard let text = string(node, path: path) else { return nil }
        guard Self.isServiceName(text) else {
            report("\"\(text)\" is not a valid service name (\(Self.serviceNameRule))", path: path, at: node)
            return nil
        }
        return text
    }

    /// Resource names: what `get`/`delete` take on the command line and in API paths.
    func resourceName(_ node: YAMLNode, path: String) -> String? {
        guard let text = string(node, path: path) else { return nil }
        let valid = (1...253).contains(text.count)
            && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._:".contains($0)) }
        guard valid else {
            report("\"\(text)\" is not a valid name (letters, digits, \"-\", \".\", \"_\", \":\")", path: path, at: node)
            return nil
        }
        return text
    }

    /// `resourceVersion`: an integer, conventionally written as a string (`"42"`).
    func resourceVersion(_ node: YAMLNode, path: String) -> String? {
        guard let text = string(node, path: path) else { return nil }
        guard !text.isEmpty, text.count <= 19, text.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            report("\"\(text)\" is not a resource version (an integer as a string, e.g. \"42\")", path: path, at: node)
            return nil
        }
        return text
    }

    /// An upper-case HTTP method token (`GET`, `POST`, or an extension method).
    func method(_ node: YAMLNode, path: String) -> String? {
        guard let text = string(node, path: path) else { return nil }
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isUppercase || $0 == "-" || $0 == "_") }) else {
            report("\"\(text)\" is not an HTTP method (upper case, e.g. GET)", path: path, at: node)
            return nil
        }
        return text
    }

    /// An HTTP path or path prefix: starts with `/`, no spaces.
    func httpPath(_ node: YAMLNode, path: String) -> String? {
        guard let text = string(node, path: path) else { return nil }
        guard text.hasPrefix("/"), !text.contains(where: { $0.isWhitespace }) else {
            report("\"\(text)\" is not a path (must start with \"/\")", path: path, at: node)
            return nil
        }
        return text
    }

    static func isHeaderName(_ text: String) -> Bool {
        !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "!#$%&'*+-.^_`|~".contains($0)) }
    }

    /// A mapping of header names (lower-cased here; HTTP names are case-insensitive) to values.
    func headerMap(_ node: YAMLNode, path: String) -> [String: String]? {
        guard let map = mapping(node, path: path) else { return nil }
        var result: [String: String] = [:]
        for (key, value) in map.entries {
            let entryPath = "\(path).\(key)"
            guard keyFits(key, path: entryPath, at: value) else { continue }
            guard Self.isHeaderName(key) else {
                report("\"\(key)\" is not a valid header name", path: entryPath, at: value)
                continue
            }
            guard let text = string(value, path: entryPath) else { continue }
            guard !text.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                report("header values cannot contain line breaks", path: entryPath, at: value)
                continue
            }
            result[key.lowercased()] = text
        }
        return result
    }

    func headerNames(_ node: YAMLNode, path: String) -> [String]? {
        guard let elements = list(node, path: path) else { return nil }
        return elements.compactMap { element in
            guard let name = string(element.node, path: element.path) else { return nil }
            guard Self.isHeaderName(name) else {
                report("\"\(name)\" is not a valid header name", path: element.path, at: element.node)
                return nil
            }
            return name.lowercased()
        }
    }
}
