import ArgumentParser
import ControlPlane
import Foundation
import MeshAPI
import NIOHTTP1
import SidecarCore

/// `control-plane apply -f FILE`: create or update resources, all or nothing.
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Create or update resources from multi-document YAML (or JSON), all or nothing.",
        discussion: """
            A resource carrying resourceVersion (as `get` prints it) must match the stored one, or the \
            apply is refused (409); one without it overwrites.
            """
    )

    @Option(name: .shortAndLong, help: ArgumentHelp("YAML or JSON file; - reads stdin.", valueName: "file"))
    var file: String

    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await reportingErrors {
            let text: String
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                do {
                    text = try String(contentsOfFile: file, encoding: .utf8)
                } catch {
                    throw CLIFailure("cannot read \(file): \(fileProblem(error))")
                }
            }
            let json = text.drop { $0.isWhitespace }.first.map { $0 == "{" || $0 == "[" } ?? false
            let response = try await client.client().send(
                .POST, "/v1/apply", body: text, contentType: json ? "application/json" : "application/yaml")
            let label = file == "-" ? "stdin" : file
            let body = try response.checked("apply \(label)")
            let applied = try JSONDecoder().decode(APIMessages.ApplyResponse.self, from: Data(body.utf8))
            for resource in applied.applied {
                print("\(resource.kind) \(resource.name) applied (resourceVersion \(resource.resourceVersion))")
            }
        }
    }
}

/// `control-plane get KIND [NAME]`: read resources, or the sidecars' status with `get proxies`.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Show resources of a kind (or one by name), or `get proxies` for every sidecar's status.",
        discussion: "Kinds: service, instance, route, trafficpolicy, authorizationpolicy (any case, singular or plural), all, proxies."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, yaml, json
    }

    @Argument(help: "Resource kind, or proxies.")
    var kind: String

    @Argument(help: "Resource name.")
    var name: String?

    @Option(name: .shortAndLong, help: "Output format: table, yaml or json.")
    var output: Format = .table

    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await reportingErrors {
            if ["proxy", "proxies"].contains(kind.lowercased()) {
                let body = try await client.client().send(.GET, "/v1/proxies").checked("get proxies")
                let proxies = try JSONDecoder().decode([APIMessages.ProxyStatus].self, from: Data(body.utf8))
                switch output {
                case .json: print(body, terminator: "")
                case .yaml, .table: print(ResourceTable.proxies(proxies), terminator: "")
                }
                return
            }
            var path = "/v1/resources"
            var what = "get all"
            if kind.lowercased() != "all" {
                guard let resourceKind = ResourceKind(word: kind) else {
                    let known = ResourceKind.allCases.map { $0.rawValue.lowercased() }.joined(separator: ", ")
                    throw CLIFailure("unknown kind \"\(kind)\" (known: \(known), all, proxies)")
                }
                path += "/" + resourceKind.rawValue.lowercased()
                what = "get \(resourceKind)"
                if let name {
                    path += "/" + Self.escape(name)
                    what += " \(name)"
                }
            }
            let body = try await client.client().send(.GET, path).checked(what)
            if output == .json {
                print(body, terminator: "")
                return
            }
            let resources: [MeshResource]
            do {
                resources = try MeshResourceDecoder.decodeJSON(body)
            } catch {
                throw CLIFailure("the server's answer does not decode: \(error)")
            }
            switch output {
            case .yaml: print(MeshResource.yaml(resources), terminator: "")
            case .table, .json: print(ResourceTable.resources(resources), terminator: "")
            }
        }
    }

    static func escape(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? name
    }
}

/// `control-plane delete KIND NAME`.
struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete one resource by kind and name.")

    @Argument(help: "Resource kind (any case, singular or plural).")
    var kind: String

    @Argument(help: "Resource name.")
    var name: String

    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await reportingErrors {
            guard let resourceKind = ResourceKind(word: kind) else {
                let known = ResourceKind.allCases.map { $0.rawValue.lowercased() }.joined(separator: ", ")
                throw CLIFailure("unknown kind \"\(kind)\" (known: \(known))")
            }
            let path = "/v1/resources/\(resourceKind.rawValue.lowercased())/\(GetCommand.escape(name))"
            _ = try await client.client().send(.DELETE, path).checked("delete \(resourceKind) \(name)")
            print("\(resourceKind) \(name) deleted")
        }
    }
}

/// `control-plane token create|list|revoke`: join tokens.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Manage join tokens: create, list, revoke.",
        discussion: """
            A join token proves which service a sidecar belongs to until it has its certificate. It \
            expires (default 24h), may be limited to N certificates (--uses N), and can be revoked. The \
            control plane stores only its SHA-256; the secret is printed once, by `token create`.
            """,
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create a join token a sidecar of SERVICE uses to get its certificate and register.",
            discussion: """
                Prints the token alone on stdout, so `control-plane token create --service web > web.token` \
                works; its id (for `token list` and `token revoke`), expiry and uses go to stderr. Each \
                certificate signed with the token takes one use.
                """
        )

        @Option(name: .long, help: ArgumentHelp("The service the token proves (a service name: lowercase letters, digits, '-', '.').", valueName: "name"))
        var service: String

        @Option(name: .long, help: ArgumentHelp("How long the token is valid (30m, 1h, 24h; at most 8760h).", valueName: "duration"))
        var ttl: String = "24h"

        @Option(name: .long, help: ArgumentHelp("How many certificates it may be exchanged for; default no limit.", valueName: "n"))
        var uses: Int?

        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingErrors {
                if let uses, uses < 1 { throw CLIFailure("--uses \(uses) must be at least 1") }
                let request = APIMessages.TokenRequest(service: service, ttl: ttl, uses: uses)
                let body = String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
                let answer = try await client.client().send(.POST, "/v1/tokens", body: body).checked("token create")
                let token = try JSONDecoder().decode(APIMessages.TokenResponse.self, from: Data(answer.utf8))
                print(token.token)
                let expires = token.expiresAt.map { TokenTable.rfc3339($0) } ?? "never"
                let uses = token.usesLeft.map { "\($0) use\($0 == 1 ? "" : "s")" } ?? "unlimited uses"
                FileHandle.standardError.write(Data(
                    "join token \(token.id ?? "?") for service \(token.service): expires \(expires), \(uses)\n".utf8))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List join tokens: id, service, expiry, uses left and state (never the secret).",
            discussion: "States: active, expired, revoked, used-up. -o json prints [{id, service, expires, usesLeft, state}]."
        )

        enum Format: String, ExpressibleByArgument, CaseIterable {
            case table, json
        }

        @Option(name: .shortAndLong, help: "Output format: table or json.")
        var output: Format = .table

        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let body = try await client.client().send(.GET, "/v1/tokens").checked("token list")
                switch output {
                case .json:
                    print(body, terminator: "")
                case .table:
                    let tokens = try JSONDecoder().decode([APIMessages.TokenStatus].self, from: Data(body.utf8))
                    print(TokenTable.render(tokens), terminator: "")
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke",
            abstract: "Revoke a join token by its id: it is refused (401) from now on.",
            discussion: "Certificates already issued with it stay valid until they expire."
        )

        @Argument(help: "The token's id, as `token list` shows it.")
        var id: String

        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingErrors {
                _ = try await client.client().send(.DELETE, "/v1/tokens/\(GetCommand.escape(id))").checked("token revoke \(id)")
                print("join token \(id) revoked")
            }
        }
    }
}

/// `control-plane ca bundle`: the trust bundle (PEM).
struct CACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca", abstract: "The mesh certificate authority.", subcommands: [Bundle.self])

    struct Bundle: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bundle",
            abstract: "Print the trust bundle (PEM root certificates) sidecars and clients verify with.",
            discussion: "With --data-dir it is read from the data dir; otherwise it is fetched from the server."
        )

        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingErrors {
                if let dataDir = client.dataDir {
                    do {
                        print(try String(contentsOfFile: dataDir + "/ca.pem", encoding: .utf8), terminator: "")
                    } catch {
                        throw CLIFailure("cannot read \(dataDir)/ca.pem: \(fileProblem(error))")
                    }
                    return
                }
                print(try await client.client().send(.GET, "/v1/ca/bundle").checked("ca bundle"), terminator: "")
            }
        }
    }
}
