import SidecarCore
print("control-plane \(MeshVersion.current)")
