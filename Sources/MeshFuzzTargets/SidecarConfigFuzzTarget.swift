import SidecarCore

/// `sidecar validate --config F`: the bootstrap YAML decoder and validator.
///
/// Properties: refusal is a `ConfigError` with at least one issue; an accepted configuration
/// re-encoded (`yaml`, and `json` read as YAML) decodes to an equal configuration; and the
/// sidecar can build its route table and limiters from it without trapping.
enum SidecarConfigFuzzTarget {
    static let baseDirectory = "/etc/mesh"

    static func run(_ data: [UInt8]) {
        let configuration: SidecarConfiguration
        do {
            configuration = try SidecarConfiguration.decode(yaml: data.text, fileName: "fuzz.yaml", baseDirectory: baseDirectory)
        } catch {
            fuzzCheck(!error.issues.isEmpty, "a refused config carries no issue")
            return
        }
        for (form, text) in [("yaml", configuration.yaml), ("json", configuration.json)] {
            do {
                let again = try SidecarConfiguration.decode(yaml: text, fileName: "again.yaml", baseDirectory: baseDirectory)
                fuzzCheck(again == configuration, "\(form) round trip changed the config:\n\(text)")
            } catch {
                fuzzCheck(false, "an accepted config's \(form) form is refused: \(error)\n\(text)")
            }
        }
        RuntimeExercise.run(
            localService: configuration.service, trustDomain: configuration.trustDomain,
            resources: configuration.resources, loopCount: data.count % 8 + 1)
    }
}
