#!/bin/sh
# Fetch packages from Debian's unstable (sid) suite without touching the system's apt state:
# a private sources list and private list/cache dirs, `apt-get download`, then `dpkg -x`.
#   fetch-sid.sh NAME BINARY PACKAGE...
# extracts PACKAGE... into $CRI_MIGRATE_CACHE/NAME/root (default /var/cache/cri-migrate) and
# prints the path of BINARY in it. The tests use it for containerd 2.x (schema 3):
#   fetch-sid.sh containerd2 usr/bin/containerd containerd
# and Docker 28 (containerd image store):
#   fetch-sid.sh docker28 usr/sbin/dockerd docker.io docker-cli
# SUITE picks another suite of the same mirror: Debian 12's Docker 20.10 (overlay2, the linked
# carry-over's proof) is
#   SUITE=bookworm fetch-sid.sh docker20 usr/sbin/dockerd docker.io
set -eu

main() {
    [ $# -ge 3 ] || { echo "usage: fetch-sid.sh NAME BINARY PACKAGE..." >&2; return 2; }
    CACHE="${CRI_MIGRATE_CACHE:-/var/cache/cri-migrate}/$1"
    BIN="$CACHE/root/$2"
    shift 2
    if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
        echo "$BIN"
        return 0
    fi
    mkdir -p "$CACHE/lists/partial" "$CACHE/archives/partial" "$CACHE/deb"
    # Same mirror as the system's own sources, suite sid.
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')
    if [ -z "$uri" ]; then
        uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 | awk '{print $2}')
    fi
    [ -n "$uri" ] || { echo "fetch-sid: no Debian mirror found in /etc/apt/sources.list*" >&2; return 1; }
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri ${SUITE:-sid} main" >"$CACHE/sid.list"
    opts="-o Dir::Etc::SourceList=$CACHE/sid.list -o Dir::Etc::SourceParts=/dev/null \
          -o Dir::State::Lists=$CACHE/lists -o Dir::Cache::Archives=$CACHE/archives \
          -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root"
    # shellcheck disable=SC2086
    timeout 600 apt-get $opts update >&2
    rm -f "$CACHE"/deb/*.deb
    # shellcheck disable=SC2086
    (cd "$CACHE/deb" && timeout 600 apt-get $opts download "$@" >&2)
    rm -rf "$CACHE/root"
    for deb in "$CACHE"/deb/*.deb; do
        dpkg -x "$deb" "$CACHE/root"
    done
    "$BIN" --version >&2
    echo "$BIN"
}

main "$@"
