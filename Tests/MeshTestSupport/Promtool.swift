import Foundation

/// `promtool check metrics` over an exposition, for the tests that assert our `/metrics` text is
/// clean. promtool comes from PATH or `.build-tools/promtool` (scripts/install-deps.sh puts it
/// there); without it a check fails rather than skips.
public enum Promtool {
    public static func path() -> String? {
        let pathEntries = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        for entry in pathEntries {
            let candidate = "\(entry)/promtool"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        // #filePath is <root>/Tests/MeshTestSupport/Promtool.swift.
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let local = root.appendingPathComponent(".build-tools/promtool").path
        return FileManager.default.isExecutableFile(atPath: local) ? local : nil
    }

    /// promtool's exit status and what it printed.
    public static func check(_ exposition: String) async throws -> (status: Int32, output: String) {
        guard let promtool = path() else {
            throw PromtoolMissing()
        }
        let result = try await ChildProcess.run([promtool, "check", "metrics"], input: exposition)
        return (result.status, result.stdout + result.stderr)
    }

    public struct PromtoolMissing: Error, CustomStringConvertible {
        public var description: String { "promtool not found on PATH or in .build-tools/: run scripts/install-deps.sh" }
    }
}
