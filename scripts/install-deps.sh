#!/usr/bin/env bash
# Installs the system packages the build and the tests need, only when one is missing:
# libssl-dev (COpenSSL), libsqlite3-dev (GRDB), pkg-config, openssl and curl (interop tests).
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
