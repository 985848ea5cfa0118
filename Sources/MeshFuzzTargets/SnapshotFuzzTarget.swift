import ControlPlane
import MeshAPI
import SidecarCore

/// A sidecar receiving `GET /v1/snapshot/{service}`: `MeshSnapshot.decode`,
/// then the route table and limiters it swaps in.
///
/// Properties: an accepted snapshot, re-encoded the way the control plane serves it
/// (`MeshSnapshot.json`), decodes to the same snapshot; its resources round-trip like applied
/// ones; the sidecar can run with them.
enum SnapshotFuzzTarget {
    static func run(_ data: [UInt8]) {
        let snapshot: MeshSnapshot
        do {
            snapshot = try MeshSnapshot.decode(json: data.text)
        } catch {
            fuzzCheck(!error.issues.isEmpty, "a refused snapshot carries no issue")
            return
        }
        let served = snapshot.json
        do {
            let again = try MeshSnapshot.decode(json: served)
            fuzzCheck(again == snapshot, "the served form of an accepted snapshot decodes differently:\n\(served)")
        } catch {
            fuzzCheck(false, "the served form of an accepted snapshot is refused: \(error)\n\(served)")
        }
        RuntimeExercise.run(
            localService: snapshot.service, trustDomain: "mesh.local", resources: snapshot.resources,
            loopCount: data.count % 8 + 1)
    }
}
