#!/usr/bin/env bash
# Install and start netship's real test stack on Debian 12 as root:
# Docker Engine (docker.io), buildx (Debian 13's static docker-buildx, unpacked only),
# qemu-user-static + binfmt, the Distribution registry on 127.0.0.1:5000, skopeo, podman.
# Idempotent: a second run finds everything up and returns fast.
set -euo pipefail

STATE=${NETSHIP_STACK_DIR:-/var/lib/netship-stack}
REGISTRY_ADDR=${NETSHIP_REGISTRY_ADDR:-127.0.0.1:5000}
mkdir -p "$STATE"

die() { echo "setup-stack: $*" >&2; exit 1; }
log() { echo "setup-stack: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages and starts dockerd)"
command -v apt-get >/dev/null || die "apt-get not found: this script targets Debian 12"

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
[ -x /usr/bin/qemu-s390x-static ] || need_pkgs+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_pkgs+=(binfmt-support)
[ -x /usr/bin/docker-registry ] || need_pkgs+=(docker-registry)
command -v skopeo >/dev/null || need_pkgs+=(skopeo)
command -v podman >/dev/null || need_pkgs+=(podman)  # a fourth reader of bundle image archives
command -v shellcheck >/dev/null || need_pkgs+=(shellcheck)  # lints install.sh as POSIX sh
command -v mmdebstrap >/dev/null || true
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps the packaged registry/docker from pulling extras.
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # The packaged registry service (if any init system started it) listens on all interfaces: stop it.
  pkill -f '/usr/bin/docker-registry serve /etc/docker/registry/config.yml' 2>/dev/null || true
fi

# buildx: Debian 13's docker-buildx is a static Go binary; unpack it, never install from trixie.
plugin_dir=/root/.docker/cli-plugins
if ! docker buildx version >/dev/null 2>&1; then
  log "fetching docker-buildx from Debian 13 (unpacked only)"
  tmp=$(mktemp -d); chmod 755 "$tmp"  # _apt must read it
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb http://deb.debian.org/debian trixie main" > "$tmp/sources.list"
  opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives")
  apt-get "${opts[@]}" update -qq
  (cd "$tmp" && apt-get "${opts[@]}" download docker-buildx >/dev/null)
  dpkg -x "$tmp"/docker-buildx_*.deb "$tmp/x"
  mkdir -p "$plugin_dir"
  install -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-buildx" "$plugin_dir/docker-buildx"
  rm -rf "$tmp"
  docker buildx version >/dev/null || die "docker buildx still not usable after unpacking"
fi

# binfmt: qemu-user-static registers through binfmt-support; make sure it is enabled.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
for q in aarch64 arm ppc64le s390x; do
  if ! grep -q enabled "/proc/sys/fs/binfmt_misc/qemu-$q" 2>/dev/null; then
    update-binfmts --enable "qemu-$q" >/dev/null 2>&1 || true
  fi
done
for q in aarch64 arm ppc64le s390x; do
  grep -q enabled "/proc/sys/fs/binfmt_misc/qemu-$q" 2>/dev/null \
    || die "binfmt for qemu-$q is not enabled (check /proc/sys/fs/binfmt_misc)"
done

# dockerd
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  setsid dockerd >"$STATE/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 30 s; see $STATE/dockerd.log"
fi

# registry: our own config, loopback only, our own storage.
if ! curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
  log "starting registry on $REGISTRY_ADDR"
  mkdir -p "$STATE/registry"
  cat > "$STATE/registry.yml" <<CFG
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY_ADDR
CFG
  setsid /usr/bin/docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 < /dev/null &
  for _ in $(seq 1 40); do curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && break; sleep 0.25; done
  curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null || die "registry did not answer on $REGISTRY_ADDR; see $STATE/registry.log"
fi

# Test base image inputs: Debian busybox-static for every arch (a static binary, so the
# base is built FROM scratch with no emulation). Cached; a second run only checks files.
DEBS=${NETSHIP_DEBS_DIR:-$STATE/debs}
for darch in amd64 arm64 armhf ppc64el s390x; do
  if ! ls "$DEBS/$darch"/busybox-static_*.deb >/dev/null 2>&1; then
    log "downloading busybox-static for $darch into $DEBS/$darch"
    lists="$STATE/apt-lists-$darch"; mkdir -p "$lists/partial" "$DEBS/$darch"; chmod 755 "$DEBS/$darch"
    aopts=(-o APT::Sandbox::User=root -o "APT::Architecture=$darch" -o "APT::Architectures=$darch" -o "Dir::State::Lists=$lists")
    apt-get "${aopts[@]}" update -qq
    (cd "$DEBS/$darch" && apt-get "${aopts[@]}" download busybox-static >/dev/null) \
      || die "could not download busybox-static for $darch (is the Debian archive reachable?)"
  fi
done

command -v skopeo >/dev/null || die "skopeo missing"
command -v ctr >/dev/null || die "ctr (containerd client) missing"
log "stack is up: docker $(docker version -f '{{.Server.Version}}'), buildx $(docker buildx version | awk '{print $2}'), registry $REGISTRY_ADDR"
