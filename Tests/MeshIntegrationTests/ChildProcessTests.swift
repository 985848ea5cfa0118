import Foundation
import MeshTestSupport
import Testing

/// The test harness's own promises about child processes: their output files leave nothing in
/// the temp directory, and they start with signals as a shell would give them.
@Suite struct ChildProcessTests {
    /// The child's stdout is a file already unlinked by the time the child runs: nothing is
    /// left behind however the test ends, yet its output reads back in full.
    @Test func outputFilesAreUnlinkedWhileTheChildRuns() async throws {
        // The child waits for a line on stdin, so it looks only once the spawn has returned.
        let child = try ChildProcess(["sh", "-c", "read go; readlink /proc/$$/fd/1; readlink /proc/$$/fd/2 >&2"])
        child.write("go\n")
        child.closeInput()
        #expect(await child.wait() == 0)
        for (name, link) in [("stdout", child.stdout), ("stderr", child.stderr)] {
            let target = link.trimmingCharacters(in: .newlines)
            #expect(target.hasSuffix(" (deleted)"), "\(name): \(target)")
            let path = String(target.dropLast(" (deleted)".count))
            #expect(path.hasPrefix(FileManager.default.temporaryDirectory.path), "\(name): \(path)")
            #expect(!FileManager.default.fileExists(atPath: path), "\(name): \(path) is still there")
        }
        child.terminate()
    }

    /// A shell script started by a test traps SIGTERM: nothing blocked or ignored is inherited
    /// from the test process (whose worker threads block most signals).
    @Test func aChildShellCanTrapSIGTERM() async throws {
        let child = try ChildProcess(["bash", "-c", "trap 'echo trapped; exit 0' TERM; echo ready; read line"])  // waits on stdin
        defer { child.terminate() }
        #expect(await eventually { child.stdout.contains("ready") })
        kill(child.process.processIdentifier, SIGTERM)
        #expect(await child.wait(timeout: .seconds(10)) == 0, "\(child.stdout)\(child.stderr)")
        #expect(child.stdout.contains("trapped"))
    }
}
