import Crypto
import Foundation
import MeshTestSupport
import Testing
import _CryptoExtras

@testable import SidecarCore

/// JWT and API-key checks of `GatewayAuthenticator`, with tokens minted here by swift-crypto:
/// ES256 and RS256 accepted, and refused for every way a token can be wrong.
@Suite(.cpuBound) struct GatewayAuthenticatorTests {
    static let now: Int64 = 1_800_000_000
    static let ecKey = P256.Signing.PrivateKey()
    static let rsaKey = try! _RSA.Signing.PrivateKey(keySize: .bits2048)

    static func b64(_ bytes: some Sequence<UInt8>) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in bytes {
            accumulator = accumulator << 8 | UInt32(byte)
            bits += 8
            while bits >= 6 {
                bits -= 6
                out.append(alphabet[Int((accumulator >> UInt32(bits)) & 63)])
            }
        }
        if bits > 0 { out.append(alphabet[Int((accumulator << UInt32(6 - bits)) & 63)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static var jwks: String {
        let raw = Array(ecKey.publicKey.rawRepresentation)
        let rsa = try! rsaKey.publicKey.getKeyPrimitives()
        return """
            {"keys":[{"kty":"EC","crv":"P-256","kid":"ec1","x":"\(b64(raw[0..<32]))","y":"\(b64(raw[32..<64]))"},
            {"kty":"RSA","kid":"rsa1","n":"\(b64(rsa.modulus))","e":"\(b64(rsa.publicExponent))"}]}
            """
    }

    static func token(alg: String = "ES256", kid: String? = nil, claims: String, signer: String? = nil) -> String {
        let header = "{\"alg\":\"\(alg)\",\"typ\":\"JWT\"\(kid.map { ",\"kid\":\"\($0)\"" } ?? "")}"
        let input = b64(Array(header.utf8)) + "." + b64(Array(claims.utf8))
        let signature: [UInt8]
        switch signer ?? alg {
        case "ES256": signature = Array(try! ecKey.signature(for: Array(input.utf8)).rawRepresentation)
        case "ES256-other": signature = Array(try! P256.Signing.PrivateKey().signature(for: Array(input.utf8)).rawRepresentation)
        case "RS256":
            signature = Array(try! rsaKey.signature(for: SHA256.hash(data: Array(input.utf8)), padding: .insecurePKCS1v1_5).rawRepresentation)
        default: signature = []
        }
        return input + "." + b64(signature)
    }

    static func claims(sub: String = "alice", aud: String = "\"api\"", exp: Int64 = now + 60, nbf: Int64? = nil, iss: String = "https://issuer.example") -> String {
        "{\"sub\":\"\(sub)\",\"aud\":\(aud),\"exp\":\(exp),\"iss\":\"\(iss)\",\"tier\":\"gold\"\(nbf.map { ",\"nbf\":\($0)" } ?? "")}"
    }

    let authenticator = GatewayAuthenticator(AuthenticationPolicy(
        name: "main",
        jwt: .init(issuer: "https://issuer.example", audiences: ["api"], jwks: GatewayAuthenticatorTests.jwks,
                   claimsToHeaders: ["tier": "x-tier"], clockSkew: .zero),
        apiKeys: .init(keys: [.init(name: "acme", sha256: Array(SHA256.hash(data: Array("s3cret".utf8))))])))

    func check(_ token: String) -> GatewayAuthenticator.Outcome {
        authenticator.authenticate(header: { $0 == "authorization" ? "Bearer \(token)" : nil }, now: Self.now)
    }

    @Test func es256AndRS256TokensAreVerified() {
        #expect(authenticator.keysProblem == nil)
        #expect(check(Self.token(claims: Self.claims())) == .verified(user: "alice", claimHeaders: [("x-tier", "gold")]))
        #expect(check(Self.token(alg: "RS256", kid: "rsa1", claims: Self.claims(sub: "bob", aud: "[\"x\",\"api\"]")))
                == .verified(user: "bob", claimHeaders: [("x-tier", "gold")]))
    }

    @Test func everyWrongTokenIsRefusedWithItsReason() {
        let cases: [(String, GatewayAuthenticator.Reason)] = [
            (Self.token(claims: Self.claims(exp: Self.now - 1)), .expired),
            (Self.token(claims: Self.claims(nbf: Self.now + 60)), .notYetValid),
            (Self.token(claims: Self.claims(aud: "\"other\"")), .audience),
            (Self.token(claims: Self.claims(iss: "https://evil.example")), .issuer),
            (Self.token(claims: Self.claims(), signer: "ES256-other"), .signature),
            (Self.token(alg: "none", claims: Self.claims()), .algorithm),
            (Self.token(alg: "HS256", claims: Self.claims()), .algorithm),
            (Self.token(alg: "RS256", claims: Self.claims(), signer: "ES256"), .signature),
            (Self.token(kid: "nope", claims: Self.claims()), .unknownKey),
            (Self.token(claims: "{\"sub\":\"a\",\"aud\":\"api\",\"iss\":\"https://issuer.example\"}"), .malformed),
            ("not.a.jwt", .malformed),
            ("a.b", .malformed),
        ]
        for (token, reason) in cases {
            #expect(check(token) == .refused(reason), "\(token)")
        }
        #expect(authenticator.authenticate(header: { _ in nil }, now: Self.now) == .refused(.missing))
        #expect(authenticator.authenticate(header: { $0 == "authorization" ? "Basic abc" : nil }, now: Self.now) == .refused(.malformed))
    }

    @Test func apiKeysAreComparedByHash() {
        #expect(authenticator.authenticate(header: { $0 == "x-api-key" ? "s3cret" : nil }, now: Self.now)
                == .verified(user: "acme", claimHeaders: []))
        #expect(authenticator.authenticate(header: { $0 == "x-api-key" ? "s3cret!" : nil }, now: Self.now) == .refused(.wrongKey))
        #expect(authenticator.challenge == "Bearer realm=\"main\", ApiKey realm=\"main\", header=\"x-api-key\"")
    }

    @Test func aJWKSThatCannotBeReadRefusesEveryToken() {
        let broken = GatewayAuthenticator(AuthenticationPolicy(name: "b", jwt: .init(jwks: "{\"keys\":[]}")))
        #expect(broken.keysProblem?.contains("no ES256") == true)
        #expect(broken.authenticate(header: { $0 == "authorization" ? "Bearer \(Self.token(claims: Self.claims()))" : nil }, now: Self.now)
                == .refused(.noKeys))
    }

    @Test func jsonScannerIsStrict() {
        #expect(JSONValue.parse(Array("{\"a\":[1,-2.5e3,true,null,\"x\\u00e9\\ud83d\\ude00\"]}".utf8))
                == .object(["a": .array([.number(1), .number(-2500), .bool(true), .null, .string("xé😀")])]))
        for bad in ["{\"a\":1,\"a\":2}", "{\"a\":01}", "[1,]", "{\"a\"}", "\"\\ud800\"", "\"a\nb\"", "{} x", String(repeating: "[", count: 40)] {
            #expect(JSONValue.parse(Array(bad.utf8)) == nil, "\(bad)")
        }
        #expect(Base64URL.decode(Array("aGk".utf8)) == Array("hi".utf8))
        #expect(Base64URL.decode(Array("aGl".utf8)) == nil, "leftover bits must be zero")
        #expect(Base64URL.decode(Array("aGk=".utf8)) == nil, "no padding")
    }
}

extension GatewayAuthenticatorTests {
    static func sha256(_ key: String) -> [UInt8] { Array(SHA256.hash(data: Array(key.utf8))) }
}
