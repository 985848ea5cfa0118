#!/usr/bin/env bash
# The release build the README, the demo, the benchmarks and scripts/symbol-order.sh use, in
# one place so they all agree (a different flag set rebuilds every module):
#
#   scripts/build-release.sh                     # every product, into .build-release/release
#   scripts/build-release.sh --product sidecar   # one product (any `swift build` option passes on)
#
# It is `swift build -c release --scratch-path .build-release` plus flags for every module, the
# dependencies too. First, `-enforce-exclusivity=unchecked`. Swift checks exclusive access
# to class properties at run time (`swift_beginAccess`), and SwiftNIO's channel reads its own
# state that way about 45 times per request per sidecar: 7 % of the sidecar's user-space
# instructions on the request path (bench/README.md, "HTTP/1.1 hot path, third pass"). Our own
# modules already build so in release (Package.swift); a dependency's flags can only be set
# from the command line. The static checks stay, and debug builds (every test) keep the
# dynamic ones. Second, one section per function (`-function-sections` for Swift,
# `-ffunction-sections` for C), so the sidecar's link can lay out the code it runs function by
# function (Package.swift, scripts/symbol-order.sh) rather than source file by source file:
# 2 MiB less of the binary resident in every sidecar (bench/README.md, "Idle memory").
# A plain `swift build -c release` builds the same program, a few per cent slower and larger.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
exec swift build -c release --scratch-path .build-release -Xswiftc -enforce-exclusivity=unchecked \
    -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections "$@"
