/// The bootstrap configuration as data, for the sidecar admin `/config` (JSON) and for
/// printing what `sidecar validate` understood (YAML). File paths appear resolved; the output
/// decodes back to an equal configuration.
extension SidecarConfiguration {
    public var configValue: ConfigValue {
        var pairs: [(String, ConfigValue)] = [
            ("service", .string(service)),
            ("inbound", .map([
                ("listen", .string(inbound.listen.description)),
                ("app", .string(inbound.app.description)),
                ("protocol", .string(inbound.appProtocol.rawValue)),
            ])),
            ("outbound", .map([
                ("listen", .string(outbound.listen.description)),
                ("tcp", .list(outbound.tcp.map {
                    .map([("listen", .string($0.listen.description)), ("service", .string($0.service))])
                })),
            ])),
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
            pairs.append(("controlPlane", .map([
                ("address", .string(controlPlane.address)), ("tokenFile", .string(controlPlane.tokenFile)),
            ])))
        }
        pairs.append(("resources", .list(resources.map(\.configValue))))
        return .map(pairs)
    }

    public var yaml: String { configValue.yaml }
    public var json: String { configValue.json }
}
