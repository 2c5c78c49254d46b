#!/bin/sh
# Build cri-migrate from this source tree and install the binary.
# In the manner of rustup-init.sh: POSIX sh, everything in functions, and the last line calls
# main, so a truncated copy of this script runs nothing.
set -u

usage() {
    cat <<'USAGE'
install.sh: build cri-migrate from this checkout and install it

USAGE:
    ./install.sh [OPTIONS]

OPTIONS:
    -y, --yes           Do not ask for confirmation (needed without a terminal)
        --prefix DIR    Install into DIR/bin (default: /usr/local as root, else ~/.local)
    -h, --help          Print this help

Needs cargo (https://rustup.rs or the distribution's cargo), a C linker and protoc; as root on
Debian or Ubuntu, install.sh installs protoc (protobuf-compiler) when it is missing.
USAGE
}

say() {
    printf 'install.sh: %s\n' "$1"
}

err() {
    say "error: $1" >&2
    exit 1
}

need_cmd() {
    if ! command -v "$1" >/dev/null 2>&1; then
        err "need '$1' (command not found)"
    fi
}

ensure() {
    if ! "$@"; then
        err "command failed: $*"
    fi
}

# The CRI bindings are generated from the CRI protobuf files at build time: protoc is needed.
ensure_protoc() {
    if command -v protoc >/dev/null 2>&1; then
        return 0
    fi
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        if [ "$1" = no ]; then
            [ -t 0 ] || err "protoc is missing: run with -y to install protobuf-compiler, or install it yourself"
            printf 'protoc is needed to build cri-migrate. Install protobuf-compiler with apt-get? [y/N] '
            read -r _answer || _answer=""
            case "$_answer" in
                y | Y | yes | YES) ;;
                *) err "protoc is missing (apt-get install protobuf-compiler)" ;;
            esac
        fi
        say "installing protobuf-compiler (protoc)"
        if ! env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null 2>&1; then
            # A fresh machine may have no package lists yet.
            ensure apt-get update -qq
            ensure env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler
        fi
        return 0
    fi
    err "protoc is missing: install it (apt-get install protobuf-compiler, dnf install protobuf-compiler)"
}

main() {
    _prefix=""
    _yes=no
    while [ $# -gt 0 ]; do
        case "$1" in
            -y | --yes) _yes=yes ;;
            --prefix)
                [ $# -gt 1 ] || err "--prefix needs a directory"
                shift
                _prefix="$1"
                ;;
            --prefix=*) _prefix="${1#--prefix=}" ;;
            -h | --help)
                usage
                return 0
                ;;
            *) err "unknown option '$1' (see ./install.sh --help)" ;;
        esac
        shift
    done
    if [ -z "$_prefix" ]; then
        if [ "$(id -u)" = 0 ]; then _prefix=/usr/local; else _prefix="$HOME/.local"; fi
    fi

    need_cmd cargo
    need_cmd install
    need_cmd dirname
    ensure_protoc "$_yes"
    _src=$(cd "$(dirname "$0")" && pwd) || err "cannot find the source directory"
    [ -f "$_src/Cargo.toml" ] || err "run install.sh from a cri-migrate checkout ($_src has no Cargo.toml)"

    if [ "$_yes" = no ]; then
        if [ -t 0 ]; then
            printf 'Build cri-migrate and install it as %s/bin/cri-migrate? [y/N] ' "$_prefix"
            read -r _answer || _answer=""
            case "$_answer" in
                y | Y | yes | YES) ;;
                *)
                    say "nothing installed"
                    return 1
                    ;;
            esac
        else
            err "no terminal to ask on: run with -y to install without asking"
        fi
    fi

    say "building (cargo build --release --locked)"
    ensure cargo build --release --locked --manifest-path "$_src/Cargo.toml"
    _target="${CARGO_TARGET_DIR:-$_src/target}"
    ensure mkdir -p "$_prefix/bin"
    ensure install -m 0755 "$_target/release/cri-migrate" "$_prefix/bin/cri-migrate"
    say "installed $_prefix/bin/cri-migrate"
    case ":${PATH}:" in
        *":$_prefix/bin:"*) ;;
        *) say "note: $_prefix/bin is not on PATH; add it, or run $_prefix/bin/cri-migrate" ;;
    esac
    say "try: cri-migrate migrate --to containerd --dry-run --root $_src/examples/nodes/kubeadm-1.23-docker"
}

main "$@" || exit 1
