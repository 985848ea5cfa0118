/// `AuthenticationPolicy` back to its config form; API keys appear only as their hashes.
extension AuthenticationPolicy {
    var configPairs: [(String, ConfigValue)] {
        var pairs: [(String, ConfigValue)] = []
        if let jwt {
            var fields: [(String, ConfigValue)] = []
            if let issuer = jwt.issuer { fields.append(("issuer", .string(issuer))) }
            fields.append(("audiences", .list(jwt.audiences.map { .string($0) })))
            if let file = jwt.jwksFile { fields.append(("jwksFile", .string(file))) }
            if let jwks = jwt.jwks { fields.append(("jwks", .string(jwks))) }
            fields.append(("claimsToHeaders", .sortedMap(jwt.claimsToHeaders)))
            fields.append(("clockSkew", .string(jwt.clockSkew.description)))
            pairs.append(("jwt", .map(fields)))
        }
        if let apiKeys {
            pairs.append(("apiKeys", .map([
                ("header", .string(apiKeys.header)),
                ("keys", .list(apiKeys.keys.map { key in
                    let digits = key.sha256.flatMap { [HTTPGrammar.hexDigit($0 >> 4), HTTPGrammar.hexDigit($0 & 0x0f)] }
                    return .map([("name", .string(key.name)), ("sha256", .string(String(decoding: digits, as: UTF8.self)))])
                })),
            ])))
        }
        return pairs
    }
}
