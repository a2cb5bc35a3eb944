#!/usr/bin/env bash
# Builds a container base image for hosts that reach no container registry:
# Debian bookworm with python3, python3-venv and python3-pip (debootstrap), plus
# the host's CA bundle and the part of its pip configuration the image can use
# (ci/container/pip_conf.py: index URLs, proxies, timeouts; never host paths), so
# that `pip` inside the build reaches the same package index as the host. Imported into the local
# container storage (vfs driver, shared by podman and buildah).
#
#   ci/container/build-base-image.sh [IMAGE]          # default localhost/base:test
#   buildah --storage-driver vfs bud --isolation chroot --format docker \
#       --build-arg BASE=localhost/base:test -t nayax-ev-exporter:test .
#
# Caching: the debootstrap tarball is kept in $NAYAX_CACHE_DIR (default
# /var/cache/nayax-ev-exporter) keyed by suite and package list; the image
# itself is reused while its label matches this script, the CA bundle and the
# pip config.
set -euo pipefail

image="${1:-localhost/base:test}"
cache_dir="${NAYAX_CACHE_DIR:-/var/cache/nayax-ev-exporter}"
ca_bundle="${NAYAX_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
suite=bookworm
packages=python3,python3-venv,python3-pip,ca-certificates
storage=(--storage-driver vfs)
label=org.nayax-ev-exporter.base-key
script="${BASH_SOURCE[0]}"

log() { printf 'build-base-image: %s\n' "$*" >&2; }

# The Debian mirror apt is configured with (deb822 .sources first, then
# sources.list), so debootstrap goes where apt is known to get through.
debian_mirror() {
    local uri=""
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources \
            | grep -v -- '-security' | head -n1 || true)
    fi
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        uri=$(sed -E 's/\[[^]]*\]//' /etc/apt/sources.list \
            | awk '$1 == "deb" && $3 !~ /security/ {print $2}' | head -n1 || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

pip_conf=$(python3 "$(dirname "$script")/pip_conf.py" /etc/ssl/certs/ca-certificates.crt)
key=$({ cat "$script" "$(dirname "$script")/pip_conf.py"; sha256sum <"$ca_bundle"; printf '%s\n' "$pip_conf"; } | sha256sum | cut -c1-16)

if podman "${storage[@]}" image exists "$image"; then
    current=$(podman "${storage[@]}" image inspect --format "{{index .Labels \"$label\"}}" "$image")
    if [[ $current == "$key" ]]; then
        log "reusing $image ($label=$key)"
        exit 0
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache_dir"
# Keyed by what debootstrap is asked for, so edits elsewhere in this script do
# not cost another debootstrap; bump rootfs_version to force one.
rootfs_version=1
rootfs_key=$(printf '%s\n' "$rootfs_version" "$suite" minbase "$packages" | sha256sum | cut -c1-16)
tarball="$cache_dir/debian-$suite-minbase-$rootfs_key.tar"

if [[ ! -s $tarball ]]; then
    mirror=$(debian_mirror)
    log "debootstrap $suite from $mirror (about a minute)"
    debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 50 "$work/debootstrap.log" >&2
        exit 1
    }
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    tar -C "$work/rootfs" --numeric-owner -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    # Tarballs of earlier package lists are dead weight (a few hundred MB each).
    find "$cache_dir" -maxdepth 1 -name "debian-$suite-minbase-*.tar" ! -name "${tarball##*/}" -delete
    rm -rf "$work/rootfs"
else
    log "using cached $tarball"
fi

mkdir "$work/rootfs"
tar -C "$work/rootfs" --numeric-owner -xf "$tarball"
install -m 0644 "$ca_bundle" "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' "$pip_conf" >"$work/rootfs/etc/pip.conf"
chmod 0644 "$work/rootfs/etc/pip.conf"

podman "${storage[@]}" rmi --force "$image" >/dev/null 2>&1 || true
tar -C "$work/rootfs" --numeric-owner -c . | podman "${storage[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL $label=$key" \
    - "$image" >/dev/null
log "imported $image ($label=$key)"
