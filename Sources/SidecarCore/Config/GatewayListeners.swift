
/// The `gateway:` block of a bootstrap file: the external listeners of a sidecar that is the
/// mesh's front door (instead of `inbound`). Plain HTTP, HTTPS with certificates from files
/// (SNI picks one by DNS SAN), or both; the HTTP listener may answer every request with a
/// redirect to the HTTPS one.
public struct GatewayListeners: Sendable, Equatable {
    public struct HTTP: Sendable, Equatable {
        public var listen: HostPort
        /// 308 to `https://<host>[:<https port>]<target>` instead of routing.
        public var redirectToHttps: Bool

        public init(listen: HostPort, redirectToHttps: Bool = false) {
            self.listen = listen
            self.redirectToHttps = redirectToHttps
        }
    }

    /// One server certificate: PEM chain (leaf first) and its key.
    public struct Certificate: Sendable, Equatable {
        public var certificate: String
        public var privateKey: String

        public init(certificate: String, privateKey: String) {
            self.certificate = certificate
            self.privateKey = privateKey
        }
    }

    public struct HTTPS: Sendable, Equatable {
        public var listen: HostPort
        /// Never empty; the first is served when the SNI names none of them (or there is no SNI).
        public var certificates: [Certificate]

        public init(listen: HostPort, certificates: [Certificate]) {
            self.listen = listen
            self.certificates = certificates
        }
    }

    public var http: HTTP?
    public var https: HTTPS?

    public init(http: HTTP? = nil, https: HTTPS? = nil) {
        self.http = http
        self.https = https
    }
}

extension GatewayListeners {
    static func decode(_ map: MappingReader, baseDirectory: String) -> GatewayListeners {
        var gateway = GatewayListeners()
        if let httpMap = map.mapping("http") {
            if let listen = httpMap.hostPort("listen", required: true) {
                gateway.http = HTTP(listen: listen, redirectToHttps: httpMap.bool("redirectToHttps") ?? false)
            }
            httpMap.finish()
        }
        if let httpsMap = map.mapping("https") {
            let listen = httpsMap.hostPort("listen", required: true)
            var certificates: [Certificate] = []
            if let elements = httpsMap.list("certificates", required: true) {
                if elements.isEmpty {
                    map.reader.report("needs at least one certificate (cert, key)", path: httpsMap.childPath("certificates"),
                                      at: httpsMap.optional("certificates"))
                }
                for element in elements {
                    guard let certMap = map.reader.mapping(element.node, path: element.path) else { continue }
                    let cert = certMap.filePath("cert", baseDirectory: baseDirectory)
                    let key = certMap.filePath("key", baseDirectory: baseDirectory)
                    if let cert, let key { certificates.append(Certificate(certificate: cert, privateKey: key)) }
                    certMap.finish()
                }
            }
            if let listen, !certificates.isEmpty { gateway.https = HTTPS(listen: listen, certificates: certificates) }
            httpsMap.finish()
        }
        if !map.has("http") && !map.has("https") {
            map.reader.report("needs http or https (or both)", path: map.path, at: map.node)
        }
        if gateway.http?.redirectToHttps == true, !map.has("https") {
            map.reader.report("redirectToHttps needs an https listener", path: "\(map.path).http.redirectToHttps", at: map.node)
        }
        return gateway
    }

    var configValue: ConfigValue {
        var pairs: [(String, ConfigValue)] = []
        if let http {
            pairs.append(("http", .map([("listen", .string(http.listen.description)), ("redirectToHttps", .bool(http.redirectToHttps))])))
        }
        if let https {
            pairs.append(("https", .map([
                ("listen", .string(https.listen.description)),
                ("certificates", .list(https.certificates.map {
                    .map([("cert", .string($0.certificate)), ("key", .string($0.privateKey))])
                })),
            ])))
        }
        return .map(pairs)
    }
}
