/// The bootstrap configuration as data, for the sidecar admin `/config` (JSON) and for
/// printing what `sidecar validate` understood (YAML). File paths appear resolved; the output
/// decodes back to an equal configuration.
extension SidecarConfiguration {
    public var configValue: ConfigValue {
        // Interception's keys appear only when set, so a config without them prints as before.
        var outboundPairs: [(String, ConfigValue)] = [
            ("listen", .string(outbound.listen.description)),
            ("tcp", .list(outbound.tcp.map {
                .map([("listen", .string($0.listen.description)), ("service", .string($0.service))])
            })),
        ]
        if outbound.transparent { outboundPairs.append(("transparent", .bool(true))) }
        if outbound.unknown != .passthrough { outboundPairs.append(("unknown", .string(outbound.unknown.rawValue))) }
        var pairs: [(String, ConfigValue)] = [("service", .string(service))]
        if let gateway {
            pairs.append(("gateway", gateway.configValue))
        } else {
            var inboundPairs: [(String, ConfigValue)] = [
                ("listen", .string(inbound.listen.description)),
                ("app", .string(inbound.app.description)),
                ("protocol", .string(inbound.appProtocol.rawValue)),
            ]
            if inbound.transparent { inboundPairs.append(("transparent", .bool(true))) }
            pairs.append(("inbound", .map(inboundPairs)))
        }
        pairs += [
            ("outbound", .map(outboundPairs)),
            ("admin", .map([("listen", .string(adminListen.description))])),
            ("trustDomain", .string(trustDomain)),
        ]
        if let tls {
            pairs.append(("tls", .map([
                ("cert", .string(tls.certificate)),
                ("key", .string(tls.privateKey)),
                ("trustBundle", .string(tls.trustBundle)),
            ])))
        }
        if let controlPlane {
            var fields: [(String, ConfigValue)] = [
                ("address", controlPlane.addresses.count == 1
                    ? .string(controlPlane.address) : .list(controlPlane.addresses.map { .string($0) })), ("tokenFile", .string(controlPlane.tokenFile)),
                ("caFile", .string(controlPlane.caFile)),
            ]
            if let advertise = controlPlane.advertise { fields.append(("advertise", .string(advertise.description))) }
            if !controlPlane.labels.isEmpty {
                fields.append(("labels", .map(controlPlane.labels.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
            }
            if let dependencies = controlPlane.dependencies {
                fields.append(("dependencies", .list(dependencies.map { .string($0) })))
            }
            fields.append(("stateDir", .string(controlPlane.stateDirectory)))
            pairs.append(("controlPlane", .map(fields)))
        }
        pairs.append(("resources", .list(resources.map(\.configValue))))
        if let tracing {
            pairs.append(("tracing", .map([("otlpEndpoint", .string(tracing.url)), ("sampling", .number(tracing.sampling))])))
        }
        return .map(pairs)
    }

    public var yaml: String { configValue.yaml }
    public var json: String { configValue.json }
}
