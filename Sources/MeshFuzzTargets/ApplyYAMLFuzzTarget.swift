import SidecarCore

/// `control-plane apply -f FILE.yaml` (and a YAML `POST /v1/apply` body): the multi-document
/// resource decoder.
///
/// Properties: refusal is a `ConfigError` with at least one issue; accepted resources
/// re-encoded as a YAML stream and as a JSON array decode to the same resources; a sidecar can
/// run with them.
enum ApplyYAMLFuzzTarget {
    static func run(_ data: [UInt8]) {
        let resources: [MeshResource]
        do {
            resources = try MeshResourceDecoder.decodeDocuments(yaml: data.text, fileName: "fuzz.yaml")
        } catch {
            fuzzCheck(!error.issues.isEmpty, "a refused stream carries no issue")
            return
        }
        ResourceRoundTrip.check(resources)
        RuntimeExercise.run(localService: "web", trustDomain: "mesh.local", resources: resources, loopCount: data.count % 8 + 1)
    }
}

/// Accepted resources survive their own encodings: what `get -o yaml|json` prints applies back.
enum ResourceRoundTrip {
    static func check(_ resources: [MeshResource]) {
        let yaml = MeshResource.yaml(resources)
        do {
            let again = try MeshResourceDecoder.decodeDocuments(yaml: yaml)
            fuzzCheck(again == resources, "YAML round trip changed the resources:\n\(yaml)")
        } catch {
            fuzzCheck(false, "accepted resources' YAML is refused: \(error)\n\(yaml)")
        }
        let json = MeshResource.json(resources)
        do {
            let again = try MeshResourceDecoder.decodeJSON(json)
            fuzzCheck(again == resources, "JSON round trip changed the resources:\n\(json)")
        } catch {
            fuzzCheck(false, "accepted resources' JSON is refused: \(error)\n\(json)")
        }
    }
}
