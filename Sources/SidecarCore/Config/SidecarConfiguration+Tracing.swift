/// `tracing.otlpEndpoint`: an OTLP/HTTP collector address, `http://host:port[/path]`.
extension SidecarConfiguration.Tracing {
    /// The address and path of `text`; a missing path (or `/`) means `/v1/traces`, as OTLP's
    /// base endpoint does. Only plain `http://`: collectors sit beside the sidecar (a
    /// node-local agent), and TLS to them is not built.
    public static func parseEndpoint(_ text: String) -> Result<(HostPort, String), HostPortError> {
        guard text.hasPrefix("http://") else {
            return .failure(HostPortError(text.hasPrefix("https://")
                ? "uses https, which is not supported: give the collector's plain http://host:port (e.g. a local agent)"
                : "needs http://host:port, as in http://127.0.0.1:4318"))
        }
        let rest = text.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var path = String(rest[slash...])
        if path.isEmpty || path == "/" { path = "/v1/traces" }
        guard path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }) else {
            return .failure(HostPortError("has a path that is not a plain absolute path"))
        }
        return HostPort.parse(String(rest[..<slash])).map { endpoint in
            (endpoint, path)
        }.flatMap { pair in
            pair.0.port == 0 ? .failure(HostPortError("needs a port other than 0")) : .success(pair)
        }
    }
}
