import Testing
@testable import SidecarCore

@Test func versionIsSemantic() {
    #expect(MeshVersion.current.split(separator: ".").count == 3)
}
