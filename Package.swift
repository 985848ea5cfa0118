// swift-tools-version:6.2
import PackageDescription

// Our targets build with zero warnings and keep it so: any warning is an error (SE-0480, tools
// 6.2). Settings apply to the target that declares them, so dependencies are not affected.
let warningsAsErrors: [SwiftSetting] = [.treatAllWarnings(as: .error)]
let cWarningsAsErrors: [CSetting] = [.treatAllWarnings(as: .error)]
// `-static-stdlib` does not name what the static FoundationEssentials needs in turn.
// `--symbol-ordering-file` and `-T symbol-order.ld`: the code a sidecar runs (startup, then the
// request path) laid out first and together, so the pages it touches hold little else
// (scripts/symbol-order.sh writes both: the functions a unique symbol names, then, in a linker
// script placed just before them, the sections no symbol names, e.g. the compiler's unnamed
// value witnesses; a stale entry is ignored, new code lands after the listed code). It pays
// in full with one section per function, which scripts/build-release.sh asks for.
// `-L Sources/sidecar/link`: the static runtime asks for `-lstdc++` before any flag of ours;
// that directory, searched before the compiler's, answers it with a linker script naming
// `libstdc++.a`, so the C++ library the runtime uses is linked in (and ordered) too, instead of
// mapping the shared one, whose start-up alone kept 1.1 MiB of each sidecar resident.
let sidecarReleaseLinkFlags = [
    "-static-stdlib", "-Xlinker", "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims",
    "-L", "\(Context.packageDirectory)/Sources/sidecar/link",
    "-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
    "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Sources/sidecar/symbol-order.txt",
    "-Xlinker", "--no-warn-symbol-ordering",
    "-Xlinker", "-T", "-Xlinker", "\(Context.packageDirectory)/Sources/sidecar/symbol-order.ld",
]

// Release builds of the data plane check exclusive access statically only: the dynamic checks
// (`swift_beginAccess` on class properties, about 60 per request per sidecar) cost measurable
// instructions on the request path (bench/README.md, issue 20). Debug builds, which every test
// runs, keep them, so a violation still traps there.
let sidecarCoreReleaseSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "mesh",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sidecar", targets: ["sidecar"]),
        .executable(name: "control-plane", targets: ["control-plane"]),
        .library(name: "SidecarCore", targets: ["SidecarCore"]),
        .library(name: "MeshAPI", targets: ["MeshAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
    ],
    targets: [
        // The system OpenSSL 3 (apt: libssl-dev) plus C shims for the macros Swift cannot call.
        // Release executables on Linux link its static archives: only the OpenSSL code a process
        // runs is resident, laid out with the sidecar's other code (sidecarReleaseLinkFlags), where
        // the shared libcrypto and libssl kept 4.6 MiB of each sidecar resident. An OpenSSL update
        // then needs a rebuild (README "Deploying"); debug builds link the shared libraries.
        .target(
            name: "COpenSSL",
            cSettings: cWarningsAsErrors,
            linkerSettings: [
                .linkedLibrary("ssl", .when(configuration: .debug)),
                .linkedLibrary("crypto", .when(configuration: .debug)),
                .linkedLibrary("ssl", .when(platforms: [.macOS], configuration: .release)),
                .linkedLibrary("crypto", .when(platforms: [.macOS], configuration: .release)),
                .unsafeFlags(
                    ["-Xlinker", "-l:libssl.a", "-Xlinker", "-l:libcrypto.a"],
                    .when(platforms: [.linux], configuration: .release)),
            ]
        ),
        // libyaml (apt: libyaml-dev), the C parser the config reader composes YAML nodes from
        // (YAMLNode.swift); no Foundation, so the sidecar links none.
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .target(
            name: "SidecarCore",
            dependencies: [
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // HTTP/2 framing, HPACK and flow control (issue 12): we write no HTTP/2 codec.
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                // The gateway's JWT checks (SHA-256, ES256) and RS256 (_CryptoExtras). A sidecar's
                // own key, CSR and checksums go through OpenSSL (TLS/), so a sidecar that is no
                // JWT-checking gateway runs none of swift-crypto.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                "CYAML",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: warningsAsErrors + sidecarCoreReleaseSettings
        ),
        // X.509 minting with swift-certificates (roots, CSRs, leaves signed from a CSR): the
        // control plane's CA, mesh-bench and tests. Not linked into the sidecar, which makes its
        // key and CSR with OpenSSL (SidecarCore's TLSCertificateRequest).
        .target(
            name: "MeshCertificates",
            dependencies: [
                "SidecarCore",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: warningsAsErrors
        ),
        // What the sidecar, the control plane and the CLI share: the API's JSON messages, the
        // snapshot wire type and the HTTPS client of the API (over SidecarCore's TLS, with the
        // mesh resource model SidecarCore holds).
        .target(
            name: "MeshAPI",
            dependencies: [
                "SidecarCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: warningsAsErrors
        ),
        // The sidecar's dynamic mode: bootstrap (CSR, first snapshot) and the agent that
        // registers, heartbeats, watches and renews; plugged into `Sidecar` by the executable.
        .target(
            name: "SidecarDiscovery",
            dependencies: [
                "SidecarCore",
                "MeshAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                // `sidecar validate`'s API clients run on NIO's shared group.
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: warningsAsErrors
        ),
        .executableTarget(
            name: "sidecar",
            dependencies: [
                "SidecarCore",
                "SidecarDiscovery",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            exclude: ["symbol-order.txt", "symbol-order.ld", "link"],
            swiftSettings: warningsAsErrors,
            // Release sidecars on Linux (`swift build -c release`, no flag to remember): the Swift
            // runtime and FoundationEssentials linked statically (only the pages a sidecar touches
            // are resident), with lld, no symbol table exported (`--export-dynamic` comes with
            // the static runtime), relative relocations packed (DT_RELR, glibc 2.36) and the code
            // in the order a sidecar runs it: 30 → 15.5 MiB idle RSS with OpenSSL linked in too,
            // 14.9 with libstdc++ as well (bench/README.md "Idle memory").
            linkerSettings: [.unsafeFlags(sidecarReleaseLinkFlags, .when(platforms: [.linux], configuration: .release))]
        ),
        // A tiny HTTP service for the demo mesh (scripts/demo.sh).
        .executableTarget(
            name: "demo-app",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: warningsAsErrors
        ),
        .executableTarget(
            name: "control-plane",
            dependencies: [
                "ControlPlane",
                "MeshAPI",
                "SidecarCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: warningsAsErrors
        ),
        // The control plane as a library: store, registry, snapshots, CA, HTTPS API, operator client.
        .target(
            name: "ControlPlane",
            dependencies: [
                "MeshAPI",
                "SidecarCore",
                "MeshCertificates",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: warningsAsErrors
        ),
        // Benchmarks: TLS handshakes and bulk throughput now, the sidecar pair later (bench/).
        .executableTarget(
            name: "mesh-bench",
            dependencies: [
                "SidecarCore",
                "MeshCertificates",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: warningsAsErrors
        ),
        // Fuzz targets over the mesh's untrusted inputs (config YAML, API JSON, snapshots, CSRs,
        // chunked bodies), one entry function each: driven by libFuzzer through `mesh-fuzz`
        // (fuzz/build.sh) and replayed over the committed corpora by MeshFuzzTargetsTests.
        // Not a product: nothing shipped depends on it.
        .target(
            name: "MeshFuzzTargets",
            dependencies: [
                "SidecarCore",
                "MeshAPI",
                "ControlPlane",
                "MeshCertificates",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: warningsAsErrors
        ),
        // The declaration of libFuzzer's driver, called by mesh-fuzz only in a -sanitize=fuzzer build.
        .target(name: "CLibFuzzer", cSettings: cWarningsAsErrors),
        .executableTarget(
            name: "mesh-fuzz",
            dependencies: ["MeshFuzzTargets", "CLibFuzzer"],
            swiftSettings: warningsAsErrors
        ),
        // Test-only helpers shared by the test targets: certificates minted at test time,
        // in-memory channel pumping, free ports, child processes, a real etcd cluster.
        .target(
            name: "MeshTestSupport",
            dependencies: [
                "SidecarCore",
                // TestPKI mints with it.
                "MeshCertificates",
                // EtcdCluster's readiness probe is our etcd client.
                "ControlPlane",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/MeshTestSupport",
            swiftSettings: warningsAsErrors
        ),
        .testTarget(
            name: "SidecarCoreTests",
            dependencies: [
                "SidecarCore",
                "MeshAPI",
                "SidecarDiscovery",
                "MeshTestSupport",
                "MeshCertificates",
                // The OpenSSL CSR read back with swift-certificates (TLSCertificateRequestTests).
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // JWTs minted in the gateway's tests.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: warningsAsErrors
        ),
        .testTarget(
            name: "ControlPlaneTests",
            dependencies: [
                "ControlPlane",
                "MeshAPI",
                "SidecarCore",
                "MeshCertificates",
                "MeshTestSupport",
                // Writes a store in the previous schema, to test its migration.
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: warningsAsErrors
        ),
        .testTarget(
            name: "MeshFuzzTargetsTests",
            dependencies: ["MeshFuzzTargets", "MeshTestSupport"],
            swiftSettings: warningsAsErrors
        ),
        .testTarget(
            name: "MeshIntegrationTests",
            dependencies: [
                "SidecarCore",
                "MeshAPI",
                "ControlPlane",
                "MeshCertificates",
                "MeshTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: warningsAsErrors
        ),
    ],
    swiftLanguageModes: [.v6]
)
