#!/bin/sh
# Fetch containerd 2.x from Debian's unstable (sid) suite without touching the system's apt state:
# a private sources list and private list/cache dirs, `apt-get download`, then `dpkg -x`.
# The extracted tree is cached outside the repo; prints the path of the containerd binary.
set -eu

CACHE="${CRI_MIGRATE_CACHE:-/var/cache/cri-migrate}/containerd2"
BIN="$CACHE/root/usr/bin/containerd"

main() {
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
    [ -n "$uri" ] || { echo "fetch-containerd2: no Debian mirror found in /etc/apt/sources.list*" >&2; return 1; }
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" >"$CACHE/sid.list"
    opts="-o Dir::Etc::SourceList=$CACHE/sid.list -o Dir::Etc::SourceParts=/dev/null \
          -o Dir::State::Lists=$CACHE/lists -o Dir::Cache::Archives=$CACHE/archives \
          -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root"
    # shellcheck disable=SC2086
    timeout 600 apt-get $opts update >&2
    # shellcheck disable=SC2086
    (cd "$CACHE/deb" && timeout 600 apt-get $opts download containerd >&2)
    rm -rf "$CACHE/root"
    dpkg -x "$(ls "$CACHE"/deb/containerd_*.deb | tail -n 1)" "$CACHE/root"
    "$BIN" --version >&2
    echo "$BIN"
}

main "$@"
