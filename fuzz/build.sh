#!/bin/sh
# Builds the fuzzers. On a shared machine run it under the build lock:
#   flock /tmp/mesh-build.lock ./fuzz/build.sh [all|mesh|http]
#
# mesh: fuzz/mesh-fuzz, every target of Sources/MeshFuzzTargets behind libFuzzer: a SwiftPM
#       release build in .build-fuzz with -sanitize=fuzzer (FUZZ_SANITIZE=fuzzer,address adds ASan).
# http: fuzz/fuzz-http, the HTTP/1.1 framing sources + FuzzHTTPFraming.swift with libFuzzer and
#       ASan, linked against NIOCore from the SwiftPM debug build (run `swift build` first).
set -e
cd "$(dirname "$0")/.."
what=${1:-all}

if [ "$what" = all ] || [ "$what" = mesh ]; then
    nice -n 15 swift build --scratch-path .build-fuzz -c release --product mesh-fuzz \
        -Xswiftc -sanitize="${FUZZ_SANITIZE:-fuzzer}" -Xswiftc -DLIBFUZZER -Xlinker --allow-multiple-definition
    ln -sf ../.build-fuzz/release/mesh-fuzz fuzz/mesh-fuzz
    echo "built fuzz/mesh-fuzz"
fi

if [ "$what" = all ] || [ "$what" = http ]; then
    B=.build/debug
    nice -n 15 swiftc -sanitize=fuzzer,address -parse-as-library -O -g \
        -module-name FuzzHTTP -I $B/Modules \
        -Xcc -fmodule-map-file=$B/CNIOLinux.build/module.modulemap \
        -Xcc -fmodule-map-file=$B/CNIODarwin.build/module.modulemap \
        -I .build/checkouts/swift-nio/Sources/CNIOWindows/include \
        -I .build/checkouts/swift-atomics/Sources/_AtomicsShims/include \
        -Xcc -fmodule-map-file=$B/CNIOWASI.build/module.modulemap \
        -Xcc -fmodule-map-file=$B/CNIOAtomics.build/module.modulemap \
        fuzz/FuzzHTTPFraming.swift Sources/SidecarCore/HTTP/*.swift \
        $B/NIOCore.build/*.o $B/_NIODataStructures.build/*.o $B/_NIOBase64.build/*.o \
        $B/NIOConcurrencyHelpers.build/*.o $B/Atomics.build/*.o $B/DequeModule.build/*.o \
        $B/InternalCollectionsUtilities.build/*.o $B/ContainersPreview.build/*.o \
        $B/CNIOLinux.build/*.o $B/CNIODarwin.build/*.o $B/CNIOWindows.build/*.o $B/CNIOWASI.build/*.o \
        $(find -L $B/CNIOAtomics.build $B/_AtomicsShims.build -name '*.o') \
        -o fuzz/fuzz-http
    echo "built fuzz/fuzz-http"
fi
