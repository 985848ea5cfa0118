#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import MeshAPI
import SidecarCore

/// What a dynamic sidecar keeps on disk to start without its control plane (fail-static): the
/// last snapshot it applied and the certificate, key and trust bundle it holds now, for one
/// service in one trust domain. This type is the file's codec, pure: `encoded()` and
/// `decode(_:service:trustDomain:now:)`; `LastKnownGoodStore` does the I/O.
///
/// The file is a line `sha256:<hex of the rest>` and a JSON body. A file that is truncated,
/// altered or not JSON is `corrupt`; one written for another service or trust domain is
/// `foreign`; one whose certificate has expired is `expired`. Each is refused whole.
struct LastKnownGoodState: Sendable, Equatable {
    /// One file per service, so sidecars whose config files share a directory (and so the
    /// default `sidecar-state/`) keep apart.
    static func fileName(service: String) -> String { "\(service).state" }
    static let format = "mesh-sidecar-state/1"

    var service: String
    var trustDomain: String
    var snapshot: MeshSnapshot
    var certificatePEM: String
    var keyPEM: String
    var bundlePEM: String
    /// The certificate's notAfter, Unix seconds.
    var expiresAt: Int64

    /// Why a state file is not used.
    enum Refusal: Error, Equatable, CustomStringConvertible {
        case corrupt(String)
        case foreign(String)
        case expired(expiresAt: Int64)

        var description: String {
            switch self {
            case .corrupt(let detail): "corrupt: \(detail)"
            case .foreign(let detail): "foreign: \(detail)"
            case .expired(let expiresAt): "expired: its certificate expired at \(expiresAt) (Unix seconds)"
            }
        }
    }

    private struct Body: Codable {
        var format: String
        var service: String
        var trustDomain: String
        /// The snapshot in its wire form (`MeshSnapshot.json`), decoded and validated on load.
        var snapshot: String
        var certificate: String
        var key: String
        var bundle: String
        var expiresAt: Int64
    }

    func encoded() -> [UInt8] {
        let body = Body(
            format: Self.format, service: service, trustDomain: trustDomain, snapshot: snapshot.json,
            certificate: certificatePEM, key: keyPEM, bundle: bundlePEM, expiresAt: expiresAt)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain strings and integers cannot fail.
        let json = Array((try? encoder.encode(body)) ?? Data())
        return Array("sha256:\(Self.hex(json))\n".utf8) + json
    }

    static func decode(
        _ bytes: [UInt8], service: String, trustDomain: String, now: Int64
    ) throws(Refusal) -> LastKnownGoodState {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            throw .corrupt("no checksum line (truncated?)")
        }
        let header = String(decoding: bytes[..<newline], as: UTF8.self)
        let json = Array(bytes[(newline + 1)...])
        guard header.hasPrefix("sha256:") else { throw .corrupt("no checksum line") }
        guard String(header.dropFirst("sha256:".count)) == hex(json) else {
            throw .corrupt("the checksum does not match its contents (truncated or altered)")
        }
        let body: Body
        do {
            body = try JSONDecoder().decode(Body.self, from: Data(json))
        } catch {
            throw .corrupt("not a sidecar state file: \(error)")
        }
        guard body.format == format else { throw .corrupt("format \"\(body.format)\", expected \"\(format)\"") }
        guard body.service == service else {
            throw .foreign("written for service \"\(body.service)\", this sidecar is \"\(service)\"")
        }
        guard body.trustDomain == trustDomain else {
            throw .foreign("written for trust domain \"\(body.trustDomain)\", this sidecar is in \"\(trustDomain)\"")
        }
        let snapshot: MeshSnapshot
        do {
            snapshot = try MeshSnapshot.decode(json: body.snapshot)
        } catch {
            throw .corrupt("its snapshot does not decode: \(error.description)")
        }
        guard snapshot.service == service else {
            throw .foreign("its snapshot is service \"\(snapshot.service)\"'s, this sidecar is \"\(service)\"")
        }
        guard body.expiresAt > now else { throw .expired(expiresAt: body.expiresAt) }
        return LastKnownGoodState(
            service: body.service, trustDomain: body.trustDomain, snapshot: snapshot,
            certificatePEM: body.certificate, keyPEM: body.key, bundlePEM: body.bundle, expiresAt: body.expiresAt)
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        TLSDigest.sha256(bytes).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
        }.joined()
    }
}

/// The state file in `controlPlane.stateDir`: written so that a crash at any moment leaves
/// either the previous file or the new one, never a torn mix (a temp file in the same
/// directory, fsynced, renamed over the old one, then the directory fsynced), mode 0600 in a
/// 0700 directory since it holds the private key. Blocking I/O: called off the event loops,
/// once per applied snapshot or renewal.
struct LastKnownGoodStore: Sendable {
    let directory: String
    let service: String
    var path: String { directory + "/" + LastKnownGoodState.fileName(service: service) }

    struct IOError: Error, CustomStringConvertible {
        let description: String
    }

    func save(_ state: LastKnownGoodState) throws {
        if let reason = Self.makeDirectories(directory) {
            throw IOError(description: "\(directory): cannot create the state directory: \(reason)")
        }
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw IOError(description: "\(temporary): cannot create: \(Self.lastError())") }
        // The mode of a file left by an earlier run with a looser umask.
        fchmod(fd, 0o600)
        let bytes = state.encoded()
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if result < 0 {
                if errno == EINTR { continue }
                let message = Self.lastError()
                close(fd)
                unlink(temporary)
                throw IOError(description: "\(temporary): cannot write: \(message)")
            }
            written += result
        }
        guard fsync(fd) == 0 else {
            let message = Self.lastError()
            close(fd)
            unlink(temporary)
            throw IOError(description: "\(temporary): cannot fsync: \(message)")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let message = Self.lastError()
            unlink(temporary)
            throw IOError(description: "\(path): cannot rename into place: \(message)")
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }

    /// The file's bytes; nil when there is none.
    func load() throws -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IOError(description: "\(path): cannot read")
        }
        return Array(data)
    }

    /// `mkdir -p`, mode 0700 for each directory it creates: nil, or the system's reason.
    private static func makeDirectories(_ path: String) -> String? {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
            if mkdir(prefix, 0o700) != 0, errno != EEXIST { return lastError() }
        }
        return nil
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
