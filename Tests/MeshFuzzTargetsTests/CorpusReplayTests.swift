import Foundation
import MeshFuzzTargets
import MeshTestSupport
import Testing

/// The CI smoke run of the fuzz targets: every committed corpus file (`fuzz/corpus/<target>/`)
/// goes through the same entry function libFuzzer drives. A property violation traps, as it
/// does under the fuzzer; a corpus that went missing fails.
@Suite(.cpuBound) struct CorpusReplayTests {
    static let corpusRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz/corpus")

    @Test(arguments: MeshFuzzTarget.allCases)
    func replaysTheCorpus(_ target: MeshFuzzTarget) throws {
        let directory = Self.corpusRoot.appendingPathComponent(target.name)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names.count >= 10, "fuzz/corpus/\(target.name) holds \(names.count) inputs")
        for name in names {
            let data = try Data(contentsOf: directory.appendingPathComponent(name))
            target.run(Array(data))
        }
    }
}
