import SidecarCore
print("sidecar \(MeshVersion.current)")
