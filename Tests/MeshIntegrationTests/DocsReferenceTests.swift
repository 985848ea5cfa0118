import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// docs/ stays true to the code: every metric family, error cause, TLS failure reason,
/// command and flag is in its reference, and the references name nothing that does not exist.
@Suite struct DocsReferenceTests {
    static func read(_ path: String) throws -> String {
        try String(contentsOf: packageRoot.appendingPathComponent(path), encoding: .utf8)
    }

    /// The first column of every table row: `` | `word` | … ``.
    static func firstColumn(_ text: Substring) -> [String] {
        text.split(separator: "\n").compactMap { line in
            line.firstMatch(of: /^\| `([^`]+)` \|/).map { String($0.output.1) }
        }
    }

    static func section(_ text: String, from start: String, to end: String? = nil) -> Substring {
        guard let lower = text.range(of: start)?.upperBound else { return "" }
        let upper = end.flatMap { text.range(of: $0, range: lower..<text.endIndex)?.lowerBound } ?? text.endIndex
        return text[lower..<upper]
    }

    @Test func everyMetricFamilyIsInTheMetricsReference() throws {
        let doc = try Self.read("docs/metrics.md")
        let sidecar = Set(Self.firstColumn(Self.section(doc, from: "## Sidecar", to: "## Control plane")))
        let controlPlane = Set(Self.firstColumn(Self.section(doc, from: "## Control plane", to: "## Golden")))
        let exposedSidecar = Set(SidecarMetrics().registry.families.map(\.descriptor.name))
        let exposedControlPlane = Set(ControlPlaneMetrics().registry.families.map(\.descriptor.name))
        #expect(exposedSidecar.subtracting(sidecar).isEmpty, "missing from docs/metrics.md: \(exposedSidecar.subtracting(sidecar))")
        #expect(sidecar.subtracting(exposedSidecar).isEmpty, "not exposed: \(sidecar.subtracting(exposedSidecar))")
        #expect(exposedControlPlane.subtracting(controlPlane).isEmpty,
                "missing from docs/metrics.md: \(exposedControlPlane.subtracting(controlPlane))")
        #expect(controlPlane.subtracting(exposedControlPlane).isEmpty, "not exposed: \(controlPlane.subtracting(exposedControlPlane))")
        // Types and labels as declared.
        for family in SidecarMetrics().registry.families + ControlPlaneMetrics().registry.families {
            let descriptor = family.descriptor
            let labels = descriptor.labelNames.map { "`\($0)`" }.joined(separator: ", ")
            let row = "| `\(descriptor.name)` | \(descriptor.kind.rawValue) | \(labels)\(labels.isEmpty ? "" : " ")|"
            #expect(doc.contains(row), "\(row)")
        }
    }

    @Test func everyErrorCauseAndTLSReasonIsInTheErrorTaxonomy() throws {
        let doc = try Self.read("docs/errors.md")
        let causes = Self.firstColumn(Self.section(doc, from: "## Responses the sidecar makes", to: "## TLS"))
        #expect(Set(causes) == Set(ProxyError.Cause.allCases.map(\.rawValue)),
                "code \(ProxyError.Cause.allCases.map(\.rawValue)) vs doc \(causes)")
        for cause in ProxyError.Cause.allCases where cause != .faultInjected {
            let status = "\(cause.status)"
            let row = doc.split(separator: "\n").first { $0.hasPrefix("| `\(cause.rawValue)` |") } ?? ""
            #expect(row.contains("| \(status)"), "\(cause.rawValue): \(row)")
        }
        let reasons = Self.firstColumn(Self.section(doc, from: "## TLS handshake failures"))
        #expect(Set(reasons) == Set(TLSFailureReason.allCases.map(\.rawValue)),
                "code \(TLSFailureReason.allCases.map(\.rawValue)) vs doc \(reasons)")
    }

    /// Flags (`--name`, `-x`) in a `--help` text, without --help and --version.
    static func helpFlags(_ help: String) -> Set<String> {
        let options = help.range(of: "OPTIONS:").map { String(help[$0.upperBound...]) } ?? ""
        return Set(options.matches(of: /(?:^|[\s,])(--[a-z][a-z-]*|-[a-z])\b/).map { String($0.output.1) })
            .subtracting(["--help", "-h", "--version"])
    }

    static func subcommands(_ help: String) -> [String] {
        let list = help.range(of: "SUBCOMMANDS:").map { String(help[$0.upperBound...]) } ?? ""
        return list.split(separator: "\n").compactMap { line in
            line.firstMatch(of: #/^  ([a-z][a-z-]*)(?: \(default\))? /#).map { String($0.output.1) }
        }
    }

    static func help(_ command: [String]) async throws -> String {
        let binary = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent()
            .appendingPathComponent(command[0]).path
        return try await ChildProcess.run([binary] + command.dropFirst() + ["--help"]).stdout
    }

    @Test func everyCommandAndFlagIsInTheCLIReference() async throws {
        let doc = try Self.read("docs/cli.md")
        // Headings "### `control-plane get KIND [NAME]`": the command is the lower-case words.
        var sections: [String: Substring] = [:]
        let headings = doc.matches(of: /\n### `([^`]+)`\n/)
        for (index, heading) in headings.enumerated() {
            let words = heading.output.1.split(separator: " ").prefix { $0.first?.isLowercase == true }
            var end = index + 1 < headings.count ? headings[index + 1].range.lowerBound : doc.endIndex
            // A level-2 heading ("## control-plane") ends the section too.
            end = doc.range(of: "\n## ", range: heading.range.upperBound..<end)?.lowerBound ?? end
            sections[words.joined(separator: " ")] = doc[heading.range.upperBound..<end]
        }
        let operatorFlags = Set(Self.section(doc, from: "## control-plane", to: "### ").matches(of: /`(--[a-z-]+)/)
            .map { String($0.output.1) })
        #expect(operatorFlags == ["--server", "--token-file", "--ca-file", "--data-dir", "--trust-domain"])

        var commands: [[String]] = []
        for executable in ["sidecar", "control-plane"] {
            for sub in Self.subcommands(try await Self.help([executable])) {
                let nested = Self.subcommands(try await Self.help([executable, sub]))
                commands += nested.isEmpty ? [[executable, sub]] : nested.map { [executable, sub, $0] }
            }
        }
        #expect(commands.count >= 9, "\(commands)")
        for command in commands {
            let name = command.joined(separator: " ")
            guard let section = sections[name] else {
                Issue.record("docs/cli.md has no heading for `\(name)`")
                continue
            }
            let inHelp = Self.helpFlags(try await Self.help(command))
            let ownTable = Set(section.matches(of: /\| `(--[a-z][a-z-]*|-[a-z])[ `]/).map { String($0.output.1) }
                + section.matches(of: /, `(--[a-z][a-z-]*)[ `]/).map { String($0.output.1) })
            let documented = ownTable.union(section.contains("operator options above") ? operatorFlags : [])
            #expect(inHelp.subtracting(documented).isEmpty, "\(name): undocumented \(inHelp.subtracting(documented))")
            #expect(ownTable.subtracting(inHelp).isEmpty, "\(name): documented but not taken \(ownTable.subtracting(inHelp))")
        }
        let known = Set(commands.map { $0.joined(separator: " ") })
        #expect(Set(sections.keys).subtracting(known).isEmpty, "headings for no command: \(Set(sections.keys).subtracting(known))")
    }

    /// Probe configs with an unknown key at every level: the decoder answers each with the keys
    /// it accepts there. The resources' order gives the kind of `resources[N]`.
    static let probeKinds = [
        "Service", "Instance", "Route", "TrafficPolicy", "AuthorizationPolicy", "GatewayRoute", "AuthenticationPolicy",
    ]
    static let probes = [
        """
        service: web
        zzzq: 1
        inbound: { listen: 127.0.0.1:15006, app: 127.0.0.1:8080, zzzq: 1 }
        outbound: { listen: 127.0.0.1:15001, zzzq: 1, tcp: [ { listen: 127.0.0.1:15432, service: db, zzzq: 1 } ] }
        admin: { zzzq: 1 }
        tls: { cert: c.pem, key: k.pem, trustBundle: ca.pem, zzzq: 1 }
        tracing: { otlpEndpoint: "http://127.0.0.1:4318", zzzq: 1 }
        resources:
          - { kind: Service, name: payments, zzzq: 1 }
          - { kind: Instance, service: payments, address: 127.0.0.1, port: 1, zzzq: 1 }
          - kind: Route
            service: payments
            zzzq: 1
            rules:
              - zzzq: 1
                match: { pathPrefix: /, zzzq: 1 }
                backends: [ { subset: { version: v1 }, weight: 100, zzzq: 1 } ]
                retries: { attempts: 2, zzzq: 1, backoff: { base: 1ms, zzzq: 1 } }
                fault: { zzzq: 1, delay: { percent: 1, duration: 1ms, zzzq: 1 }, abort: { percent: 1, status: 500, zzzq: 1 } }
                mirror: { subset: { version: v1 }, percent: 1, zzzq: 1 }
                rateLimit: { requestsPerSecond: 1, burst: 1, zzzq: 1 }
                requestHeaders: { zzzq: 1 }
          - kind: TrafficPolicy
            service: payments
            zzzq: 1
            circuitBreaker: { zzzq: 1 }
            outlierDetection: { zzzq: 1 }
            retryBudget: { zzzq: 1 }
            rateLimit: { requestsPerSecond: 1, burst: 1, zzzq: 1 }
            fallback: { status: 200, zzzq: 1 }
          - kind: AuthorizationPolicy
            service: payments
            zzzq: 1
            allow: [ { from: [ web ], zzzq: 1 } ]
          - kind: GatewayRoute
            name: api
            zzzq: 1
            rules: [ { service: payments, zzzq: 1 } ]
          - kind: AuthenticationPolicy
            name: keys
            zzzq: 1
            jwt: { jwks: "{}", zzzq: 1 }
            apiKeys: { zzzq: 1, keys: [ { name: a, sha256: "\(String(repeating: "0", count: 64))", zzzq: 1 } ] }
        """,
        """
        service: edge
        gateway:
          zzzq: 1
          http: { listen: 127.0.0.1:8080, zzzq: 1 }
          https: { listen: 127.0.0.1:8443, certificates: [ { cert: a.pem, key: a.key } ], zzzq: 1 }
        tls: { cert: c.pem, key: k.pem, trustBundle: ca.pem }
        """,
        """
        service: web
        inbound: { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }
        controlPlane: { address: "https://127.0.0.1:15010", tokenFile: t, caFile: ca.pem, zzzq: 1 }
        """,
    ]

    /// Every key the decoder accepts, as (section, dotted path with `[]` for list items):
    /// section `config` for the sidecar file, a resource kind for `resources[N]`.
    static func acceptedKeys() async throws -> Set<String> {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let sidecar = URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent()
            .appendingPathComponent("sidecar").path
        var keys: Set<String> = []
        for (index, probe) in probes.enumerated() {
            let path = directory.path + "/probe\(index).yaml"
            try probe.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try await ChildProcess.run([sidecar, "validate", "--config", path])
            for match in (result.stdout + result.stderr).matches(of: /([A-Za-z0-9_.\[\]]*?)\.?zzzq: unknown key \(allowed: ([^)]*)\)/) {
                var prefix = String(match.output.1).replacing(/\[[0-9]+\]/, with: "[]")
                var section = "config"
                if let resource = String(match.output.1).firstMatch(of: /^resources\[([0-9]+)\]\.?/) {
                    section = probeKinds[Int(resource.output.1)!]
                    prefix = String(String(match.output.1)[resource.range.upperBound...]).replacing(/\[[0-9]+\]/, with: "[]")
                }
                for key in match.output.2.split(separator: ",") {
                    let name = key.trimmingCharacters(in: .whitespaces)
                    keys.insert("\(section) \(prefix.isEmpty ? name : prefix + "." + name)")
                }
            }
        }
        return keys
    }

    @Test func everyConfigKeyIsInTheConfigurationReference() async throws {
        let doc = try Self.read("docs/configuration.md")
        var documented: Set<String> = []
        for key in Self.firstColumn(Self.section(doc, from: "## Sidecar config file", to: "## Resources")) {
            documented.insert("config \(key)")
        }
        for (index, kind) in Self.probeKinds.enumerated() {
            let next = index + 1 < Self.probeKinds.count ? "### \(Self.probeKinds[index + 1])\n" : nil
            for key in Self.firstColumn(Self.section(doc, from: "### \(kind)\n", to: next)) { documented.insert("\(kind) \(key)") }
        }
        let accepted = try await Self.acceptedKeys()
        #expect(accepted.count > 80, "the probes found \(accepted.count) keys: \(accepted.sorted())")
        #expect(accepted.subtracting(documented).isEmpty, "accepted but not in docs/configuration.md: \(accepted.subtracting(documented).sorted())")
        // Leaf maps the probes do not open (labels, headers, set/remove of responseHeaders).
        let unprobed: Set = ["Route rules[].responseHeaders.set", "Route rules[].responseHeaders.remove"]
        let extra = documented.subtracting(accepted).subtracting(unprobed)
        #expect(extra.isEmpty, "in docs/configuration.md but not accepted: \(extra.sorted())")
    }
}

/// The README stands alone: its static example is a config the sidecar accepts, its TLS
/// reason table lists every reason the code can emit, and neither it nor `sidecar`'s help
/// sends the reader to a file that is not in the repository.
@Suite struct ReadmeTests {
    static let readme: String = (try? DocsReferenceTests.read("README.md")) ?? ""

    static var sidecar: String {
        URL(fileURLWithPath: ControlPlaneServer.binary).deletingLastPathComponent().appendingPathComponent("sidecar").path
    }

    /// The README's static example: the YAML block after "A static example", one document per
    /// service, named by its `# web.yaml: …` comment.
    static func staticExample() throws -> [(name: String, yaml: String)] {
        let section = DocsReferenceTests.section(readme, from: "A static example, two services, no control plane:")
        let block = try #require(section.firstMatch(of: /```yaml\n([\s\S]*?)```/), "no ```yaml block after the static example's heading")
        return try block.output.1.split(separator: "\n---\n").map { document in
            let name = try #require(document.firstMatch(of: /^# ([a-z]+\.yaml):/), "\(document)")
            return (String(name.output.1), String(document))
        }
    }

    @Test func theStaticExampleIsTwoServicesThatTheSidecarAccepts() async throws {
        let example = try Self.staticExample()
        #expect(example.map(\.name) == ["web.yaml", "payments.yaml"])
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // The certificate files it names, minted here (as scripts/demo-static.sh does with openssl).
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        let pki = TestPKI()
        for service in ["web", "payments"] { try pki.issue(service: service).write(to: certs, name: service) }
        for (name, yaml) in example {
            #expect(!yaml.contains("controlPlane"), "\(name): static mode")
            let path = directory.path + "/" + name
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try await ChildProcess.run([Self.sidecar, "validate", "--config", path])
            #expect(result.status == 0, "\(name): \(result.stdout)\(result.stderr)")
            #expect(result.stdout.hasPrefix("\(path): ok (service \(name.dropLast(5)), "), "\(result.stdout)")
        }
    }

    @Test func theTLSReasonTableListsEveryReasonTheCodeCanEmit() {
        let table = DocsReferenceTests.section(Self.readme, from: "| reason | when |", to: "\n\n")
        var listed: Set<String> = []
        for line in table.split(separator: "\n") where line.hasPrefix("| `") {
            let firstCell = line.dropFirst(2).prefix { $0 != "|" }
            listed.formUnion(firstCell.matches(of: /`([a-z-]+)`/).map { String($0.output.1) })
        }
        #expect(listed == Set(TLSFailureReason.allCases.map(\.rawValue)),
                "code \(TLSFailureReason.allCases.map(\.rawValue)) vs README \(listed.sorted())")
    }

    @Test func sidecarWithoutArgumentsShowsConfigAndTheReferenceInTheRepository() async throws {
        let bare = try await ChildProcess.run([Self.sidecar])
        let help = try await ChildProcess.run([Self.sidecar, "--help"])
        #expect(bare.status != 0)
        for output in [bare.stdout + bare.stderr, help.stdout] {
            #expect(output.contains("sidecar --config <file>"), "\(output)")
            #expect(output.contains("docs/configuration.md"), "\(output)")
            #expect(!output.contains("DESIGN"), "\(output)")
        }
        let docs = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("docs").path)
            .filter { $0.hasSuffix(".md") }.map { "docs/" + $0 }
        #expect(docs.count >= 4, "\(docs)")
        for document in ["README.md", "SECURITY.md"] + docs {
            #expect(!(try DocsReferenceTests.read(document)).contains("DESIGN.md"), "\(document) names a DESIGN.md the repository does not have")
        }
        #expect(FileManager.default.fileExists(atPath: packageRoot.appendingPathComponent("docs/configuration.md").path))
    }
}
