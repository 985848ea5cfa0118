import Testing

@testable import SidecarCore

/// `outbound.transparent`, `outbound.unknown`, `inbound.transparent` and a Service's
/// `addresses`: decoded, validated with errors naming the key, written back equal.
@Suite struct InterceptionConfigTests {
    static let transparent = """
        service: web
        inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080, transparent: true }
        outbound: { listen: 127.0.0.1:15001, transparent: true, unknown: registry-only }
        tls: { cert: web.pem, key: web.key, trustBundle: ca.pem }
        resources:
          - { kind: Service, name: ledger, addresses: [ 10.96.0.10, "fd00::10" ] }

        """

    @Test func theKeysDecodeAndDefaultToOff() throws {
        let config = try SidecarConfiguration.decode(yaml: Self.transparent, fileName: "web.yaml")
        #expect(config.inbound.transparent)
        #expect(config.outbound.transparent)
        #expect(config.outbound.unknown == .registryOnly)
        #expect(config.resources == [.service(MeshService(name: "ledger", addresses: ["10.96.0.10", "fd00::10"]))])

        let plain = try SidecarConfiguration.decode(yaml: ConfigFixtures.sidecar(), fileName: "web.yaml")
        #expect(!plain.inbound.transparent && !plain.outbound.transparent)
        #expect(plain.outbound.unknown == .passthrough)
    }

    @Test func theyReadBackFromWhatValidateAndConfigPrint() throws {
        let config = try SidecarConfiguration.decode(yaml: Self.transparent, fileName: "web.yaml")
        #expect(try SidecarConfiguration.decode(yaml: config.yaml) == config)
        let service = MeshResource.service(MeshService(name: "ledger", addresses: ["10.96.0.10"]))
        #expect(try MeshResourceDecoder.decodeJSON(service.json) == [service], "snapshots carry addresses (dynamic mode)")
    }

    @Test func errorsNameTheKey() {
        func issues(_ yaml: String) -> [String] {
            do {
                _ = try SidecarConfiguration.decode(yaml: yaml, fileName: "web.yaml")
                return []
            } catch {
                return error.issues.map(\.description)
            }
        }
        #expect(issues(Self.transparent.replacingOccurrences(of: "0.0.0.0:15006", with: "127.0.0.1:15006")) == [
            "web.yaml:2: inbound.listen: inbound.transparent needs inbound.listen on an address other hosts reach (e.g. 0.0.0.0:15006), not 127.0.0.1",
        ])
        #expect(issues(Self.transparent.replacingOccurrences(of: "127.0.0.1:15001", with: "10.0.0.5:15001")) == [
            "web.yaml:3: outbound.listen: outbound.transparent needs outbound.listen on loopback or every address (e.g. 127.0.0.1:15001), not 10.0.0.5",
        ])
        #expect(issues(Self.transparent.replacingOccurrences(of: "127.0.0.1:15001", with: "0.0.0.0:15001")) == [])
        #expect(issues(Self.transparent.replacingOccurrences(of: "10.96.0.10", with: "ledger.example")) == [
            #"web.yaml:6: resources[0].addresses[0]: "ledger.example" is not an IP address (a virtual IP of the service, e.g. 10.96.0.10)"#,
        ])
        let unknown = issues(Self.transparent.replacingOccurrences(of: "registry-only", with: "deny"))
        #expect(unknown.count == 1)
        #expect(unknown.first?.hasPrefix("web.yaml:3: outbound.unknown: ") == true, "\(unknown)")
        #expect(unknown.first?.contains("registry-only") == true)
    }
}
