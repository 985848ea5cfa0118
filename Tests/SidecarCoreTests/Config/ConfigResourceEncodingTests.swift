import Testing
@testable import SidecarCore

/// `control-plane get -o yaml|json` and the API's JSON bodies: what is written reads back equal.
@Suite struct ConfigResourceEncodingTests {
    func designResources() throws -> [MeshResource] {
        try MeshResourceDecoder.decodeDocuments(yaml: ConfigFixtures.resourcesYAML)
    }

    @Test func yamlRoundTripIsEqualAndStable() throws {
        let resources = try designResources().map { $0.withResourceVersion("42") }
        let yaml = MeshResource.yaml(resources)
        let decoded = try MeshResourceDecoder.decodeDocuments(yaml: yaml, fileName: "get.yaml")
        #expect(decoded == resources)
        #expect(decoded.allSatisfy { $0.resourceVersion == "42" })
        #expect(MeshResource.yaml(decoded) == yaml)
    }

    /// Found by fuzzing (fuzz/corpus/apply-yaml): a label key written as more than 1024
    /// characters (here tabs, each written `\t`) was accepted, but its YAML and JSON forms were
    /// not readable (libyaml's key limit), so `get -o yaml` could not be applied back and a
    /// snapshot carrying it would be refused by every sidecar. Keys are now at most 128 characters.
    @Test func labelAndHeaderKeysAreBoundedSoTheyReadBack() throws {
        let longest = String(repeating: "\t", count: ConfigReader.maxKeyLength)
        let instance = MeshResource.instance(Instance(service: "payments", address: "127.0.0.1", port: 1, labels: [longest: "v"]))
        #expect(try MeshResourceDecoder.decodeDocuments(yaml: instance.yaml) == [instance])
        #expect(try MeshResourceDecoder.decodeJSON(instance.json) == [instance])

        let tooLong = "ve" + String(repeating: "\\t", count: 600)
        for yaml in [
            "kind: Instance\nservice: payments\naddress: 127.0.0.1\nport: 1\nlabels:\n  ? \"\(tooLong)\"\n  : v\n",
            "kind: Route\nservice: payments\nrules: [ { match: { headers: { \(String(repeating: "x", count: 129)): v } } } ]\n",
        ] {
            #expect(throws: ConfigError.self) { try MeshResourceDecoder.decodeDocuments(yaml: yaml) }
        }
    }

    @Test func jsonRoundTripIsEqual() throws {
        let resources = try designResources()
        let decoded = try MeshResourceDecoder.decodeJSON(MeshResource.json(resources))
        #expect(decoded == resources)
        for resource in resources {
            #expect(try MeshResourceDecoder.decodeJSON(resource.json) == [resource])
        }
    }

    @Test func canonicalYAMLOfAnInstance() throws {
        let instance = MeshResource.instance(Instance(
            service: "payments", address: "127.0.0.1", port: 16006, labels: ["zone": "a", "version": "v1"], ttl: .seconds(90)))
        #expect(instance.yaml == """
            kind: Instance
            name: payments-127.0.0.1-16006
            service: payments
            address: "127.0.0.1"
            port: 16006
            labels:
              version: v1
              zone: a
            health: healthy
            ttl: 90s

            """)
        #expect(instance.json == #"{"kind":"Instance","name":"payments-127.0.0.1-16006","service":"payments","address":"127.0.0.1","port":16006,"labels":{"version":"v1","zone":"a"},"health":"healthy","ttl":"90s"}"#)
    }

    @Test func awkwardStringsSurviveBothForms() throws {
        let policy = MeshResource.trafficPolicy(TrafficPolicy(
            service: "payments",
            fallback: FallbackResponse(
                status: 503,
                headers: ["x-note": "true", "x-num": "1.5", "x-empty": ""],
                body: "line1\nline2\t\"quoted\" \\ back: # not a comment\u{1}é, NEL\u{85} C1\u{9F} LS\u{2028} BOM\u{FEFF} \u{FFFE}")))
        #expect(try MeshResourceDecoder.decodeDocuments(yaml: policy.yaml) == [policy])
        #expect(try MeshResourceDecoder.decodeJSON(policy.json) == [policy])
    }

    @Test func jsonInputWithTabsAndErrorsWithLines() throws {
        let json = "{\n\t\"kind\": \"Service\",\n\t\"name\": \"payments\",\n\t\"protocol\": \"tcp\"\n}"
        #expect(try MeshResourceDecoder.decodeJSON(json) == [.service(MeshService(name: "payments", appProtocol: .tcp))])

        let bad = "{\n  \"kind\": \"Instance\",\n  \"service\": \"payments\",\n  \"address\": \"10.0.0.1\",\n  \"port\": \"80\"\n}"
        let error = #expect(throws: ConfigError.self) { try MeshResourceDecoder.decodeJSON(bad, fileName: "body") }
        #expect(error?.description == #"body:5: port: expected an integer, got "80""#)

        let array = #"[{"kind":"Service","name":"a"},{"kind":"Service","name":"B"}]"#
        let arrayError = #expect(throws: ConfigError.self) { try MeshResourceDecoder.decodeJSON(array) }
        #expect(arrayError?.issues.map(\.path) == ["[1].name"])

        let broken = #expect(throws: ConfigError.self) {
            try MeshResourceDecoder.decodeJSON("{\"kind\": \"Service\",\n \"name\": \"a\" \"b\"}")
        }
        #expect(broken?.issues.count == 1)
        #expect(broken?.issues.first?.line == 2, "\(String(describing: broken))")
        #expect(broken?.description.contains("invalid YAML") == true)
    }
}
