#!/usr/bin/env bash
# Installs the system packages the build and the tests need, only when one is missing:
# libssl-dev (COpenSSL), libyaml-dev (CYAML: the config reader's YAML parser), libsqlite3-dev (GRDB), pkg-config, openssl and curl (interop tests),
# etcd-server (the etcd store's tests start their own etcd cluster; the package's own service
# is not started in containers, and the tests use free ports, never 2379), python3 and
# python3-venv (the tests' venv, below), chromium and chromium-driver (the dashboard's browser
# test drives headless Chromium through Selenium), nftables (`sidecar iptables` and the
# interception tests, which run it in network namespaces of their own), iptables (its fallback
# where a host has no nft; a test hides nft to run it), valgrind (bench/instructions.sh, the
# instructions-per-request regression guard).
# Also promtool and prometheus (metrics tests, the demo), unpacked into .build-tools/ without
# installing Debian's prometheus package (whose service would start and take port 9090), and
# the tests' Python packages (scripts/requirements-test.txt) in a venv, .venv/.
set -euo pipefail
packages=(libssl-dev libyaml-dev libsqlite3-dev pkg-config openssl curl etcd-server python3 python3-venv chromium chromium-driver nftables iptables valgrind)
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

# promtool (tests check the /metrics exposition with `promtool check metrics` and the alert
# rules with `promtool check rules`) and prometheus (the demo and an integration test run a
# real one as a plain process): both taken out of Debian's prometheus package into
# .build-tools/ without installing it, so no system Prometheus service is ever started (it
# would take port 9090). A prometheus or promtool already on PATH is used as it is.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools=()
for tool in promtool prometheus; do
    command -v "$tool" >/dev/null 2>&1 || [[ -x "$root/.build-tools/$tool" ]] || tools+=("$tool")
done
if ((${#tools[@]})); then
    echo "fetching ${tools[*]} from Debian's prometheus package into $root/.build-tools/" >&2
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
    for tool in "${tools[@]}"; do
        install -m 0755 "$scratch/extracted/usr/bin/$tool" "$root/.build-tools/$tool"
    done
fi

# The tests' Python packages (jsonschema and PyYAML for scripts/check-compose.py, selenium for
# Tests/Browser/dashboard_test.py), from PyPI
# into .venv/, pinned in scripts/requirements-test.txt; redone only when one is missing.
if ! "$root/.venv/bin/python3" -c 'import jsonschema, yaml, selenium, jwt, cryptography, grpc, grpc_tools' 2>/dev/null; then
    echo "installing the tests' Python packages into $root/.venv/ (scripts/requirements-test.txt)" >&2
    rm -rf "$root/.venv"
    python3 -m venv "$root/.venv"
    "$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$root/scripts/requirements-test.txt"
fi
