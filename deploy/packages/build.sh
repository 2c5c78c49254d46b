#!/usr/bin/env bash
# Build cri-migrate's .deb and .rpm from this checkout: the release binary, man pages generated
# from the command line definition (clap_mangen, `cri-migrate manpages`), shell completions in
# their standard places, and the docs. Debian's dpkg-deb builds the .deb; rpmbuild (Debian's
# `rpm` package) the .rpm, from the same staged tree.
#   deploy/packages/build.sh [OUTDIR]     (default: target/packages)
# install.sh stays the from-source path.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$REPO/target/packages}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
ARCH_DEB=$(dpkg --print-architecture 2>/dev/null || echo amd64)
ARCH_RPM=$(uname -m)

command -v dpkg-deb >/dev/null || { echo "build.sh: dpkg-deb is needed (apt-get install dpkg)" >&2; exit 1; }

echo "==> cargo build --release"
(cd "$REPO" && cargo build --release --locked --quiet -p cri-migrate)
BIN="$REPO/target/release/cri-migrate"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/root"
mkdir -p "$ROOT/usr/bin" "$ROOT/usr/share/man/man1" "$ROOT/usr/share/doc/cri-migrate/docs" \
    "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
    "$ROOT/usr/share/fish/vendor_completions.d"
install -m 0755 "$BIN" "$ROOT/usr/bin/cri-migrate"
"$BIN" manpages "$STAGE/man" >/dev/null
for page in "$STAGE"/man/*.1; do
    gzip -9n <"$page" >"$ROOT/usr/share/man/man1/$(basename "$page").gz"
done
"$BIN" completions bash >"$ROOT/usr/share/bash-completion/completions/cri-migrate"
"$BIN" completions zsh >"$ROOT/usr/share/zsh/vendor-completions/_cri-migrate"
"$BIN" completions fish >"$ROOT/usr/share/fish/vendor_completions.d/cri-migrate.fish"
install -m 0644 "$REPO/README.md" "$ROOT/usr/share/doc/cri-migrate/README.md"
install -m 0644 "$REPO"/docs/*.md "$ROOT/usr/share/doc/cri-migrate/docs/"
cat >"$ROOT/usr/share/doc/cri-migrate/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cri-migrate
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPY
mkdir -p "$OUT"

echo "==> .deb"
DEB="$STAGE/deb"
cp -a "$ROOT" "$DEB"
mkdir -p "$DEB/DEBIAN"
SIZE=$(du -sk "$DEB/usr" | cut -f1)
cat >"$DEB/DEBIAN/control" <<CONTROL
Package: cri-migrate
Version: $VERSION
Architecture: $ARCH_DEB
Maintainer: cri-migrate developers <cri-migrate@localhost>
Installed-Size: $SIZE
Depends: libc6 (>= 2.34), systemd
Recommends: containerd | cri-o, skopeo
Section: admin
Priority: optional
Homepage: https://github.com/cri-migrate/cri-migrate
Description: move a Kubernetes node off Docker Engine onto containerd or CRI-O
 cri-migrate inspects a node still on dockershim or cri-dockerd, plans the move to
 containerd or CRI-O (the runtime's config merged into what is there, registry host
 files, the kubelet's flags), shows it as a diff, carries Docker's images over,
 applies it with backups and verifies it through CRI, rolling back by itself on
 failure or on a signal.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$DEB" "$OUT/cri-migrate_${VERSION}_${ARCH_DEB}.deb" >/dev/null
echo "$OUT/cri-migrate_${VERSION}_${ARCH_DEB}.deb"

if command -v rpmbuild >/dev/null; then
    echo "==> .rpm"
    TOP="$STAGE/rpm"
    mkdir -p "$TOP"/{BUILD,RPMS,SPECS,SRPMS,SOURCES,BUILDROOT}
    cat >"$TOP/SPECS/cri-migrate.spec" <<SPEC
Name: cri-migrate
Version: $VERSION
Release: 1
Summary: Move a Kubernetes node off Docker Engine onto containerd or CRI-O
License: Apache-2.0
URL: https://github.com/cri-migrate/cri-migrate
Requires: systemd
Recommends: (containerd or cri-o)

%description
cri-migrate inspects a node still on dockershim or cri-dockerd, plans the move to
containerd or CRI-O, shows it as a diff, carries Docker's images over, applies it with
backups and verifies it through CRI, rolling back by itself on failure or on a signal.

%install
mkdir -p %{buildroot}
cp -a $ROOT/. %{buildroot}/

%files
/usr/bin/cri-migrate
/usr/share/man/man1/*.1.gz
/usr/share/bash-completion/completions/cri-migrate
/usr/share/zsh/vendor-completions/_cri-migrate
/usr/share/fish/vendor_completions.d/cri-migrate.fish
%doc /usr/share/doc/cri-migrate
SPEC
    rpmbuild --quiet -bb --define "_topdir $TOP" --define "_build_id_links none" \
        --define "__strip /bin/true" --target "$ARCH_RPM" "$TOP/SPECS/cri-migrate.spec" >/dev/null 2>"$STAGE/rpmbuild.log" ||
        { cat "$STAGE/rpmbuild.log" >&2; exit 1; }
    cp "$TOP"/RPMS/*/cri-migrate-*.rpm "$OUT/"
    ls "$OUT"/cri-migrate-*.rpm
else
    echo "==> .rpm skipped: rpmbuild is not installed (apt-get install rpm)" >&2
fi
