/// The mesh's release version, printed by `sidecar --version` and `control-plane --version`.
public enum MeshVersion {
    public static let current = "0.1.0"
}
