#if LIBFUZZER
import CLibFuzzer
#endif
import Foundation
import MeshFuzzTargets

/// `mesh-fuzz`: the mesh's fuzz targets behind one executable.
///
/// Built by `fuzz/build.sh` (with `-sanitize=fuzzer -DLIBFUZZER`) it is a libFuzzer binary:
/// `MESH_FUZZ_TARGET=config mesh-fuzz [libFuzzer flags] CORPUS…` (`fuzz/run.sh` sets it up).
/// Built by a plain `swift build` it replays inputs without libFuzzer, which is how a crash
/// found elsewhere is reproduced under the debugger: `mesh-fuzz config crash-1234…`.
@main
enum MeshFuzz {
    static func main() {
        #if LIBFUZZER
        _ = selectedTarget
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) })
        #else
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = MeshFuzzTarget(rawValue: name) else {
            usage("usage: mesh-fuzz TARGET FILE|DIRECTORY…  (replays inputs) with TARGET one of")
        }
        var count = 0
        for path in arguments.dropFirst() {
            for file in files(at: path) {
                guard let data = FileManager.default.contents(atPath: file) else {
                    FileHandle.standardError.write(Data("cannot read \(file)\n".utf8))
                    exit(1)
                }
                target.run(Array(data))
                count += 1
            }
        }
        print("\(target.name): \(count) inputs, no property violated")
        #endif
    }

    private static func usage(_ text: String) -> Never {
        let names = MeshFuzzTarget.allCases.map(\.name).joined(separator: ", ")
        FileHandle.standardError.write(Data("\(text): \(names)\n".utf8))
        exit(2)
    }

    /// A file, or the regular files directly inside a directory (sorted).
    private static func files(at path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return [path]
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.sorted().map { "\(path)/\($0)" }
    }
}

#if LIBFUZZER
/// The target `MESH_FUZZ_TARGET` names, read once.
let selectedTarget: MeshFuzzTarget = {
    guard let name = ProcessInfo.processInfo.environment["MESH_FUZZ_TARGET"], let target = MeshFuzzTarget(rawValue: name) else {
        let names = MeshFuzzTarget.allCases.map(\.name).joined(separator: ", ")
        FileHandle.standardError.write(Data("set MESH_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    return target
}()

/// libFuzzer's entry. `main` above hands it to `LLVMFuzzerRunDriver`; the link also carries
/// libFuzzer's own `main` (clang links the runtime whole, and SwiftPM aliases `main` to ours:
/// fuzz/build.sh passes `--allow-multiple-definition`), which calls it by this name. Either
/// way the same target runs.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedTarget.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#endif
