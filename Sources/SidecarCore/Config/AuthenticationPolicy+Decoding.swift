
/// Decoding an `AuthenticationPolicy` (`kind: AuthenticationPolicy`): a required `name`, and
/// `jwt` or `apiKeys` (or both). The JWKS itself is read and checked when a route table is
/// built (`GatewayAuthenticator`), where a bad key set refuses the whole snapshot.
extension AuthenticationPolicy {
    static func decode(_ map: MappingReader, common: MeshResource.Common) -> AuthenticationPolicy {
        let reader = map.reader
        if common.name == nil, !map.has("name") {
            reader.report("is required (an AuthenticationPolicy is named by its name)", path: map.childPath("name"), at: map.node)
        }
        var policy = AuthenticationPolicy(name: common.name ?? "", resourceVersion: common.resourceVersion)
        if let jwtMap = map.mapping("jwt") {
            var jwt = JWT()
            jwt.issuer = jwtMap.string("issuer")
            jwt.audiences = jwtMap.stringList("audiences") ?? []
            jwt.jwksFile = jwtMap.string("jwksFile")
            jwt.jwks = jwtMap.string("jwks")
            if (jwt.jwksFile == nil) == (jwt.jwks == nil) {
                reader.report("give the keys as jwksFile (a path) or jwks (inline JSON), exactly one", path: jwtMap.path, at: jwtMap.node)
            }
            jwt.claimsToHeaders = jwtMap.optional("claimsToHeaders").flatMap {
                reader.claimHeaderMap($0, path: jwtMap.childPath("claimsToHeaders"))
            } ?? [:]
            jwt.clockSkew = jwtMap.duration("clockSkew", allowZero: true) ?? .seconds(30)
            policy.jwt = jwt
            jwtMap.finish()
        }
        if let keysMap = map.mapping("apiKeys") {
            let header = keysMap.optional("header").flatMap { node -> String? in
                guard let text = reader.string(node, path: keysMap.childPath("header")) else { return nil }
                guard ConfigReader.isHeaderName(text) else {
                    reader.report("\"\(text)\" is not a valid header name", path: keysMap.childPath("header"), at: node)
                    return nil
                }
                return text.lowercased()
            } ?? "x-api-key"
            var keys: [APIKeys.Key] = []
            for element in keysMap.list("keys", required: true) ?? [] {
                guard let keyMap = reader.mapping(element.node, path: element.path) else { continue }
                let name = keyMap.optional("name").flatMap { reader.resourceName($0, path: keyMap.childPath("name")) }
                if keyMap.optional("name") == nil { reader.report("is required", path: keyMap.childPath("name"), at: keyMap.node) }
                let digest = keyMap.optional("sha256").flatMap { node -> [UInt8]? in
                    guard let text = reader.string(node, path: keyMap.childPath("sha256")) else { return nil }
                    guard let bytes = Self.hexBytes(text), bytes.count == 32 else {
                        reader.report("is not a SHA-256 (64 hex digits: printf %s KEY | sha256sum)",
                                      path: keyMap.childPath("sha256"), at: node)
                        return nil
                    }
                    return bytes
                }
                if keyMap.optional("sha256") == nil { reader.report("is required", path: keyMap.childPath("sha256"), at: keyMap.node) }
                if let name, let digest { keys.append(APIKeys.Key(name: name, sha256: digest)) }
                keyMap.finish()
            }
            policy.apiKeys = APIKeys(header: header, keys: keys)
            keysMap.finish()
        }
        if policy.jwt == nil, policy.apiKeys == nil, !map.has("jwt"), !map.has("apiKeys") {
            reader.report("needs jwt or apiKeys", path: map.path, at: map.node)
        }
        return policy
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = HTTPGrammar.hexValue(digits[index]), let low = HTTPGrammar.hexValue(digits[index + 1]) else {
                return nil
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }
}

extension ConfigReader {
    /// Claim names (any string) to header names (lower-cased, valid tokens, not a mesh identity header).
    func claimHeaderMap(_ node: YAMLNode, path: String) -> [String: String]? {
        guard let map = mapping(node, path: path) else { return nil }
        var result: [String: String] = [:]
        for (claim, value) in map.entries {
            let entryPath = "\(path).\(claim)"
            guard let header = string(value, path: entryPath) else { continue }
            guard Self.isHeaderName(header), !["x-mesh-caller", "x-mesh-user", "host"].contains(header.lowercased()) else {
                report("\"\(header)\" cannot carry a claim (a header name; not host, x-mesh-caller or x-mesh-user)",
                       path: entryPath, at: value)
                continue
            }
            result[claim] = header.lowercased()
        }
        return result
    }
}
