import ArgumentParser
import ControlPlane
import Foundation
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

/// `control-plane token create --service NAME [--ttl 1h]`.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage join tokens.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create a join token a sidecar of SERVICE uses to get its certificate and register.",
            discussion: "Prints the token alone on stdout, so `control-plane token create --service web > web.token` works."
        )

        @Option(name: .long, help: ArgumentHelp("The service the token proves.", valueName: "name"))
        var service: String

        @Option(name: .long, help: ArgumentHelp("How long the token is valid (30m, 1h, 24h); default never expires.", valueName: "duration"))
        var ttl: String?

        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let request = APIMessages.TokenRequest(service: service, ttl: ttl)
                let body = String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
                let answer = try await client.client().send(.POST, "/v1/tokens", body: body).checked("token create")
                let token = try JSONDecoder().decode(APIMessages.TokenResponse.self, from: Data(answer.utf8))
                print(token.token)
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
