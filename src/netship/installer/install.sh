#!/bin/sh
# netship offline installer: runs on the air-gapped node from the unpacked bundle folder.
# Needs only POSIX sh, coreutils and the node's container runtime (docker or containerd).
#
# Order: 1. verify every file against SHA256SUMS (refuse on any mismatch, missing or
# extra file); 2. load images/images.tar into docker or containerd; 3. install the CNI
# binaries (bin/cni/) into /opt/cni/bin or --prefix; 4. optionally retag and push the
# images to a private registry; 5. print what to apply next.
set -eu

usage() {
  cat <<'USAGE'
usage: install.sh [options]
  --runtime auto|docker|containerd   where to load the images (default: auto-detect)
  --containerd-address PATH          containerd socket for ctr (default: ctr's own default)
  --namespace NS                     containerd namespace (default: k8s.io)
  --prefix DIR                       install CNI binaries here (default: /opt/cni/bin)
  --tools-dir DIR                    also install the CLIs of bin/tools/ here
  --registry REG                     retag the images as REG/PATH:TAG and push them there
  --plain-http                       push to REG over plain http (containerd only)
  --skip-images                      do not load images
  --skip-binaries                    do not install binaries
  --verify-only                      check SHA256SUMS and stop
  --dry-run                          verify, then print the commands instead of running them
  -h, --help                         this text
USAGE
}

RUNTIME=auto
CTR_ADDRESS=
NAMESPACE=k8s.io
PREFIX=/opt/cni/bin
TOOLS_DIR=
REGISTRY=
PLAIN_HTTP=0
SKIP_IMAGES=0
SKIP_BINARIES=0
VERIFY_ONLY=0
DRY_RUN=0

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) need_arg "$@"; RUNTIME=$2; shift 2 ;;
    --containerd-address) need_arg "$@"; CTR_ADDRESS=$2; shift 2 ;;
    --namespace) need_arg "$@"; NAMESPACE=$2; shift 2 ;;
    --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
    --tools-dir) need_arg "$@"; TOOLS_DIR=$2; shift 2 ;;
    --registry) need_arg "$@"; REGISTRY=${2%/}; shift 2 ;;
    --plain-http) PLAIN_HTTP=1; shift ;;
    --skip-images) SKIP_IMAGES=1; shift ;;
    --skip-binaries) SKIP_BINARIES=1; shift ;;
    --verify-only) VERIFY_ONLY=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
case "$RUNTIME" in auto|docker|containerd) ;; *) die "--runtime: expected auto, docker or containerd, got $RUNTIME" ;; esac

run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"

# 1. verify ---------------------------------------------------------------------------
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"
[ -f SHA256SUMS ] || die "SHA256SUMS missing in $HERE; refusing to install"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
if grep -v -q -E '^[0-9a-f]{64}  [^ /][^ ]*$' SHA256SUMS; then
  die "SHA256SUMS has malformed lines; refusing to install"
fi
bad=0
sed -e 's/^[0-9a-f]\{64\}  //' SHA256SUMS | LC_ALL=C sort >"$TMP/listed"
find . -type f ! -path ./SHA256SUMS | sed -e 's|^\./||' | LC_ALL=C sort >"$TMP/present"
if ! cmp -s "$TMP/listed" "$TMP/present"; then
  LC_ALL=C comm -13 "$TMP/listed" "$TMP/present" | sed 's/^/  extra file: /' >&2
  LC_ALL=C comm -23 "$TMP/listed" "$TMP/present" | sed 's/^/  missing file: /' >&2
  bad=1
fi
if ! sha256sum --check --strict --quiet SHA256SUMS >"$TMP/check" 2>&1; then
  grep -v 'No such file or directory' "$TMP/check" | sed 's/^/  /' >&2
  bad=1
fi
[ "$bad" = 0 ] || die "bundle content does not match SHA256SUMS; refusing to install"
say "verified $(wc -l <SHA256SUMS | tr -d ' ') files against SHA256SUMS"
[ "$VERIFY_ONLY" = 1 ] && exit 0

# 2. images ---------------------------------------------------------------------------
ctr_cmd() {
  if [ -n "$CTR_ADDRESS" ]; then
    run ctr --address "$CTR_ADDRESS" -n "$NAMESPACE" "$@"
  else
    run ctr -n "$NAMESPACE" "$@"
  fi
}

detect_runtime() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v ctr >/dev/null 2>&1; then
    echo containerd
  else
    echo none
  fi
}

if [ "$SKIP_IMAGES" = 0 ] || [ -n "$REGISTRY" ]; then
  if [ "$RUNTIME" = auto ]; then
    RUNTIME=$(detect_runtime)
    [ "$RUNTIME" != none ] || die "no container runtime found (docker or ctr); use --runtime or --skip-images"
    say "runtime: $RUNTIME (detected)"
  fi
fi

if [ "$SKIP_IMAGES" = 0 ]; then
  [ -f images/images.tar ] || die "images/images.tar missing"
  case "$RUNTIME" in
    docker) run docker load -i images/images.tar ;;
    containerd) ctr_cmd images import --all-platforms images/images.tar ;;
  esac
fi

# 3. binaries -------------------------------------------------------------------------
installed=0
install_dir() {  # SRC_DIR DEST_DIR
  [ -d "$1" ] || return 0
  run mkdir -p "$2"
  for f in "$1"/*; do
    [ -f "$f" ] || continue
    run install -m 0755 "$f" "$2/$(basename "$f")"
    installed=$((installed + 1))
  done
}
if [ "$SKIP_BINARIES" = 0 ]; then
  install_dir bin/cni "$PREFIX"
  say "CNI binaries: $installed into $PREFIX"
  if [ -n "$TOOLS_DIR" ]; then
    n=$installed
    install_dir bin/tools "$TOOLS_DIR"
    say "tools: $((installed - n)) into $TOOLS_DIR"
  fi
fi

# 4. retag + push -----------------------------------------------------------------------
if [ -n "$REGISTRY" ]; then
  [ -f images/tags.txt ] || die "images/tags.txt missing"
  while IFS= read -r ref; do
    [ -n "$ref" ] || continue
    new="$REGISTRY/${ref#*/}"
    case "$RUNTIME" in
      docker)
        run docker tag "$ref" "$new"
        run docker push "$new" ;;
      containerd)
        ctr_cmd images tag --force "$ref" "$new"
        if [ "$PLAIN_HTTP" = 1 ]; then ctr_cmd images push --plain-http "$new"; else ctr_cmd images push "$new"; fi ;;
    esac
  done <images/tags.txt
fi

# 5. next steps ---------------------------------------------------------------------------
echo "netship offline bundle installed$( [ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing changed)')."
if [ -d manifests ] && [ -n "$(ls manifests 2>/dev/null)" ]; then
  echo "next: apply the manifests for this node's network add-on, e.g.:"
  for m in manifests/*; do
    echo "  kubectl apply -f $HERE/$m"
  done
else
  echo "next: apply your network add-on's manifests (this bundle carries none)."
fi
if [ -n "$REGISTRY" ]; then
  echo "images were pushed to $REGISTRY: point the manifests' image: fields there."
fi
