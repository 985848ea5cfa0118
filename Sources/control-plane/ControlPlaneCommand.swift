import ArgumentParser
import ControlPlane
import Foundation
import SidecarCore

/// `control-plane`: the server (`serve`) and the operator CLI in one executable. Argument
/// parsing and wiring only; the work is in the ControlPlane library.
@main
struct ControlPlaneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control-plane",
        abstract: "The mesh control plane: registry, policy, certificate authority, and its operator CLI.",
        discussion: """
            Operator commands find the server, admin token and CA from --server/--token-file/--ca-file, \
            or MESH_SERVER, MESH_TOKEN (the token itself), MESH_TOKEN_FILE, MESH_CA_FILE, or --data-dir DIR \
            on the server's machine (reads admin.token, ca.pem and the address serve recorded there). The server \
            must present spiffe://DOMAIN/control-plane, DOMAIN from --trust-domain or MESH_TRUST_DOMAIN (default mesh.local).
            """,
        version: "control-plane \(MeshVersion.current)",
        subcommands: [
            ServeCommand.self, ApplyCommand.self, GetCommand.self, DeleteCommand.self, TokenCommand.self,
            CACommand.self, StatCommand.self,
        ]
    )
}

/// Prints one line on stderr and exits non-zero: how every operator error ends.
struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning any error into one line on stderr and exit status 1.
    func reportingErrors(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("control-plane: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// Why a file could not be read, in a few words.
func fileProblem(_ error: any Error) -> String {
    let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
    if let code = underlying?.code, underlying?.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(code))).lowercased()
    }
    switch (error as NSError).code {
    case NSFileReadNoSuchFileError: return "no such file"
    case NSFileReadNoPermissionError: return "permission denied"
    default: return (error as NSError).localizedDescription
    }
}
