#!/bin/sh
# Build Vigil's image from Debian's packages alone (`make container`; README: A container):
#   1. debootstrap a minimal bookworm root filesystem (with Python 3.11) from the Debian mirror
#      apt uses on this machine, once (kept in .vigil/container/rootfs.tar);
#   2. `podman import` it as localhost/vigil-base:bookworm;
#   3. `podman build` container/Containerfile on it, from the checkout's tracked files, with this
#      machine's pip configuration and local wheel folders mounted read-only.
# podman runs with Debian's runc and explicit ulimits (container/containers.conf): its default
# runtime crun refuses to start on hosts with cgroups in hybrid mode.
set -eu
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/vigil:latest}
BASE=localhost/vigil-base:bookworm
WORK=.vigil/container
export CONTAINERS_CONF="$PWD/container/containers.conf"
mkdir -p "$WORK"

mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
if [ ! -s "$WORK/rootfs.tar" ]; then
  echo "container: debootstrap bookworm from $mirror"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$mirror" \
    > "$WORK/debootstrap.log"
  tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar.part" . && mv "$WORK/rootfs.tar.part" "$WORK/rootfs.tar"
  rm -rf "$WORK/rootfs"
fi
if ! podman image exists "$BASE"; then
  echo "container: podman import $WORK/rootfs.tar as $BASE"
  podman import "$WORK/rootfs.tar" "$BASE" >/dev/null
fi

# the build context: the files git tracks or would (not ignored), as they are in the working tree
context="$WORK/context"
rm -rf "$context" && mkdir -p "$context"
git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -n 1 sh -c '[ -e "$1" ] && printf "%s\0" "$1"; true' files \
  | tar --null -T - -cf - | tar -C "$context" -xf -

# pip inside the build reads what pip reads here: its find-links and index folders, mounted, and
# the certificate authorities it trusts (a proxy's among them), at the same paths
pip_config=$(python3 -m pip config list 2>/dev/null)
setting() { printf '%s\n' "$pip_config" | sed -n "s/^global\.\($1\)='\(.*\)'$/\2/p"; }
conf="$WORK/pip.conf"
{
  echo "[global]"
  printf '%s\n' "$pip_config" | sed -n "s/^global\.\(find-links\|extra-index-url\|index-url\|cert\)='\(.*\)'$/\1 = \2/p"
} > "$conf"
mounts=""
for path in $(setting cert) $(setting 'find-links\|extra-index-url'); do
  path=${path#file://}; path=${path%/simple}
  [ -e "$path" ] && mounts="$mounts --volume $path:$path:ro"
done
echo "container: podman build $IMAGE"
revision=$(git rev-parse HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo "-dirty")
# shellcheck disable=SC2086 # $mounts is a list of options
podman build --network host --volume "$PWD/$conf:/etc/pip.conf:ro" $mounts \
  --label "org.opencontainers.image.revision=$revision" -f container/Containerfile -t "$IMAGE" "$context"
podman image inspect "$IMAGE" --format "container: built {{.Id}} ({{.Size}} bytes) from $revision"
