/// The X.509 material a sidecar presents and trusts: its certificate chain and private key
/// (whose URI SAN is its SPIFFE ID) and the trust bundle its peers must chain to. Files in
/// static mode; PEM held in memory in dynamic mode, where the key never leaves the process.
public struct SidecarIdentity: Sendable, Equatable {
    public var certificateChain: PEMSource
    public var privateKey: PEMSource
    public var trustBundle: PEMSource

    public init(certificateChain: PEMSource, privateKey: PEMSource, trustBundle: PEMSource) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustBundle = trustBundle
    }

    /// Static mode's files.
    public init(_ files: SidecarConfiguration.TLSFiles) {
        self.init(certificateChain: .file(files.certificate), privateKey: .file(files.privateKey), trustBundle: .file(files.trustBundle))
    }
}
