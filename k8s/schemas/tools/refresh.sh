#!/usr/bin/env bash
# Regenerates the vendored schemas under k8s/schemas from the package registries (PyPI, npm).
# The hand-written KubeRay schemas (crds/ray.io/v1/) are not touched.
#
#   bash k8s/schemas/tools/refresh.sh
#
# Change the pinned versions below, run, review `git diff --stat k8s/schemas`, then run
# `python k8s/validate.py` and the tests in tests/unit/k8s.
set -euo pipefail

KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
CORE_DIR="kubernetes_validate/kubernetes-json-schema/v1.31.0-local-strict"
STRIMZI="@kubernetes-models/strimzi-kafka-operator@1.0.1"
PROMETHEUS="@kubernetes-models/prometheus-operator@6.0.0"
KEDA="@kubernetes-models/keda@2.0.0"
ACORN="acorn@8.19.0"
ACORN_WALK="acorn-walk@8.3.5"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
schemas="$(dirname "${here}")"
repo="$(cd "${schemas}/../.." && pwd)"
python="${PYTHON:-${repo}/.venv/bin/python}"
[[ -x "${python}" ]] || python="$(command -v python3)"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

echo "== ${KUBERNETES_VALIDATE} (PyPI)"
"${python}" -m pip download --quiet --no-deps --dest "${tmp}/wheel" "${KUBERNETES_VALIDATE}"
"${python}" -m zipfile -e "${tmp}"/wheel/*.whl "${tmp}/kv"
core_src="${tmp}/kv/${CORE_DIR}"

echo "== npm packages"
mkdir -p "${tmp}/npm"
(
    cd "${tmp}/npm"
    npm init -y >/dev/null
    npm install --silent --no-audit --no-fund "${ACORN}" "${ACORN_WALK}"
    for pkg in "${STRIMZI}" "${PROMETHEUS}" "${KEDA}"; do
        tarball="$(npm pack --silent "${pkg}" | tail -n 1)"
        dir="${pkg#@kubernetes-models/}"
        dir="${dir%@*}"
        mkdir -p "${dir}"
        tar -xzf "${tarball}" -C "${dir}"
    done
)

# module in the package's _schemas/ -> file under k8s/schemas/crds/
convert() {
    local pkg="$1" module="$2" out="$3"
    (cd "${tmp}/npm" && CORE_DEFINITIONS="${core_src}/_definitions.json" \
        node "${here}/ajv2jsonschema.mjs" "${tmp}/npm/${pkg}/package" "${module}" "${tmp}/crds/${out}")
}
for kind in Kafka KafkaNodePool KafkaTopic KafkaUser; do
    convert strimzi-kafka-operator "KafkaStrimziIoV1beta2${kind}" "kafka.strimzi.io/v1beta2/${kind}.json"
done
for kind in PodMonitor ServiceMonitor PrometheusRule; do
    convert prometheus-operator "ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1${kind}" \
        "monitoring.coreos.com/v1/${kind}.json"
done
for kind in ScaledObject TriggerAuthentication; do
    convert keda "ComGithubKedacoreKedaV2ApisKedaV1alpha1${kind}" "keda.sh/v1alpha1/${kind}.json"
done

for group in kafka.strimzi.io monitoring.coreos.com keda.sh; do
    rm -rf "${schemas}/crds/${group}"
    cp -r "${tmp}/crds/${group}" "${schemas}/crds/${group}"
done

echo "== core (Kubernetes 1.31, strict) and index"
"${python}" "${here}/vendor_core.py" "${core_src}"
du -sh "${schemas}"
