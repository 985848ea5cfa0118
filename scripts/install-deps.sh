#!/usr/bin/env bash
# Installs the system packages the build and the tests need, only when one is missing:
# libssl-dev (COpenSSL), libsqlite3-dev (GRDB), pkg-config, openssl and curl (interop tests).
# Also promtool (metrics tests), unpacked into .build-tools/ without installing Prometheus.
set -euo pipefail
packages=(libssl-dev libsqlite3-dev pkg-config openssl curl)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# promtool (tests check the /metrics exposition with `promtool check metrics`): taken out of
# Debian's prometheus package without installing it, so no Prometheus server is ever started.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
promtool_path="$root/.build-tools/promtool"
if ! command -v promtool >/dev/null 2>&1 && [[ ! -x "$promtool_path" ]]; then
    echo "fetching promtool into $promtool_path" >&2
    scratch="$(mktemp -d)"
    chmod 0755 "$scratch"  # apt fetches as the _apt user
    trap 'rm -rf "$scratch"' EXIT
    if ! (cd "$scratch" && apt-get download prometheus >/dev/null 2>&1); then
        sudo_cmd=()
        [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
        "${sudo_cmd[@]}" apt-get update -qq
        (cd "$scratch" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb -x "$scratch"/prometheus_*.deb "$scratch/extracted"
    mkdir -p "$root/.build-tools"
    install -m 0755 "$scratch/extracted/usr/bin/promtool" "$promtool_path"
fi
