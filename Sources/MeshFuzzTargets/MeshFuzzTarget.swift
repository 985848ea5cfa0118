/// The fuzz targets over the mesh's untrusted inputs, each one entry function taking raw
/// bytes. `mesh-fuzz` hands them to libFuzzer (`fuzz/build.sh`, `fuzz/run.sh`); the
/// `MeshFuzzTargetsTests` replay every committed corpus file through the same functions, so
/// CI checks the corpora without a fuzzer build.
///
/// An entry returns normally for any input, accepted or refused; it traps (through
/// `fuzzCheck`) only when a property the code promises does not hold, which is a bug.
/// Stateless apart from immutable fixtures made once, so any order of inputs is fine.
public enum MeshFuzzTarget: String, CaseIterable, Sendable {
    /// `sidecar validate`: bootstrap YAML through `SidecarConfiguration.decode`.
    case config
    /// Control-plane API request bodies: the `APIMessages` JSON and `apply`'s JSON resources.
    case apiJSON = "api-json"
    /// `control-plane apply -f`: multi-document YAML through `MeshResourceDecoder`.
    case applyYAML = "apply-yaml"
    /// A sidecar decoding a control plane's snapshot and building its route table from it.
    case snapshot
    /// The CA reading a CSR (PEM text, DER, or one built from fuzzed SANs) and signing it.
    case csr
    /// The chunked body framer (with trailers): one read against split reads and a reference decoder.
    case chunked

    /// The libFuzzer dictionary and corpus directory name (`fuzz/corpus/<name>`).
    public var name: String { rawValue }

    /// Runs one input.
    public func run(_ data: [UInt8]) {
        switch self {
        case .config: SidecarConfigFuzzTarget.run(data)
        case .apiJSON: APIBodyFuzzTarget.run(data)
        case .applyYAML: ApplyYAMLFuzzTarget.run(data)
        case .snapshot: SnapshotFuzzTarget.run(data)
        case .csr: CSRFuzzTarget.run(data)
        case .chunked: ChunkedBodyFuzzTarget.run(data)
        }
    }
}

/// A property violation: traps with the message (libFuzzer then saves the input).
@inline(never)
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}

extension [UInt8] {
    /// The bytes as text the way a server reads a body: invalid UTF-8 repaired, never refused.
    var text: String { String(decoding: self, as: UTF8.self) }
}
