import ArgumentParser
import ControlPlane
import MeshAPI
import SidecarCore
import Foundation

/// Where an operator command finds the server, the admin token and the CA to trust: options,
/// then `--data-dir`, then the environment (kubectl/consul style).
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Control plane URL, or several replicas' comma-separated, tried in order (env MESH_SERVER).", valueName: "https://host:port[,…]"))
    var server: String?

    @Option(name: .long, help: ArgumentHelp("File holding the admin token (env MESH_TOKEN, MESH_TOKEN_FILE).", valueName: "file"))
    var tokenFile: String?

    @Option(name: .long, help: ArgumentHelp("CA bundle to verify the server with (env MESH_CA_FILE).", valueName: "file"))
    var caFile: String?

    @Option(name: .long, help: ArgumentHelp("The server's data dir, on its machine: reads token, CA and address from it.", valueName: "dir"))
    var dataDir: String?

    @Option(name: .long, help: ArgumentHelp(
        "Trust domain of the mesh (env MESH_TRUST_DOMAIN, default mesh.local): the server must present spiffe://DOMAIN/control-plane.",
        valueName: "domain"))
    var trustDomain: String?

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    func resolvedServer() -> String {
        if let server { return server }
        if let dataDir, let recorded = try? read(dataDir + "/server.url") { return recorded }
        if let server = environment["MESH_SERVER"], !server.isEmpty { return server }
        return "https://127.0.0.1:15010"
    }

    func resolvedToken() throws -> String {
        if let tokenFile { return try read(tokenFile) }
        if let dataDir { return try read(dataDir + "/admin.token") }
        if let token = environment["MESH_TOKEN"], !token.isEmpty { return token }
        if let file = environment["MESH_TOKEN_FILE"], !file.isEmpty { return try read(file) }
        throw CLIFailure("no admin token: pass --token-file FILE or --data-dir DIR, or set MESH_TOKEN or MESH_TOKEN_FILE")
    }

    func resolvedCA() throws -> String {
        if let caFile { return try read(caFile) }
        if let dataDir { return try read(dataDir + "/ca.pem") }
        if let file = environment["MESH_CA_FILE"], !file.isEmpty { return try read(file) }
        throw CLIFailure("no CA to trust: pass --ca-file FILE or --data-dir DIR, or set MESH_CA_FILE")
    }

    func resolvedTrustDomain() -> String {
        if let trustDomain { return trustDomain }
        if let domain = environment["MESH_TRUST_DOMAIN"], !domain.isEmpty { return domain }
        return SPIFFEID.defaultTrustDomain
    }

    func client() throws -> MeshAPIReplicaClient {
        let configured = server != nil || tokenFile != nil || caFile != nil || dataDir != nil
            || ["MESH_SERVER", "MESH_TOKEN", "MESH_TOKEN_FILE", "MESH_CA_FILE"].contains { !(environment[$0] ?? "").isEmpty }
        guard configured else {
            throw CLIFailure(
                "no control plane configured: pass --server URL with --token-file and --ca-file, or --data-dir DIR on the "
                    + "control plane's machine (or set MESH_SERVER, MESH_TOKEN_FILE, MESH_CA_FILE)")
        }
        return try MeshAPIReplicaClient(
            servers: resolvedServer(), caPEM: resolvedCA(), token: resolvedToken(), trustDomain: resolvedTrustDomain())
    }

    private func read(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw CLIFailure("cannot read \(path): \(fileProblem(error))")
        }
    }
}

extension MeshAPIClient.Response {
    /// The body of a 2xx answer; otherwise the server's one-line error as a failure.
    func checked(_ action: String) throws -> String {
        guard (200..<300).contains(status) || status == 304 else {
            var message = body.trimmingCharacters(in: .whitespacesAndNewlines)
            if let data = body.data(using: .utf8),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let error = object["error"] as? String
            {
                message = error
            }
            throw CLIFailure("\(action) failed (\(status)): \(message)")
        }
        return body
    }
}
