"""Vendors the Kubernetes core schemas and writes k8s/schemas/index.json.

Usage (refresh.sh runs it):
    python vendor_core.py SRC_DIR
where SRC_DIR is kubernetes_validate/kubernetes-json-schema/v1.31.0-local-strict from the
kubernetes-validate wheel.

The per-kind files of the kinds in KINDS are copied byte for byte into core/v1.31.0-strict/.
Their _definitions.json is pruned to the definitions reachable from those kinds and from every
other schema under k8s/schemas (the CRD schemas and the hand-written KubeRay ones refer to core
types such as PodTemplateSpec), so run this after the CRD schemas have been (re)generated.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent.parent
CORE = SCHEMAS / "core" / "v1.31.0-strict"
DEFS_URI = "https://kubernetes.io/api/_definitions.json"

# (file in the upstream folder) — the kinds the manifests may use.
KINDS = [
    "namespace-v1.json",
    "serviceaccount-v1.json",
    "configmap-v1.json",
    "secret-v1.json",
    "service-v1.json",
    "persistentvolumeclaim-v1.json",
    "pod-v1.json",
    "resourcequota-v1.json",
    "limitrange-v1.json",
    "deployment-apps-v1.json",
    "statefulset-apps-v1.json",
    "daemonset-apps-v1.json",
    "job-batch-v1.json",
    "cronjob-batch-v1.json",
    "poddisruptionbudget-policy-v1.json",
    "horizontalpodautoscaler-autoscaling-v2.json",
    "role-rbac-v1.json",
    "rolebinding-rbac-v1.json",
    "clusterrole-rbac-v1.json",
    "clusterrolebinding-rbac-v1.json",
    "networkpolicy-networking-v1.json",
    "ingress-networking-v1.json",
    "priorityclass-scheduling-v1.json",
]

REF = re.compile(r'"\$ref":\s*"([^"]*)"')


def core_refs(text: str) -> set[str]:
    """Names of core definitions a schema text refers to."""
    names = set()
    for ref in REF.findall(text):
        into_core = "_definitions.json#/$defs/" in ref and (
            "kubernetes.io" in ref or ref.startswith("/api/")
        )
        if into_core or ref.startswith("#/$defs/io.k8s."):
            names.add(ref.split("#/$defs/", 1)[1])
    return names


def main(src: Path) -> None:
    if CORE.exists():
        shutil.rmtree(CORE)
    CORE.mkdir(parents=True)
    wanted: set[str] = set()
    for name in KINDS:
        shutil.copyfile(src / name, CORE / name)
        wanted |= core_refs((src / name).read_text())
    for path in sorted(SCHEMAS.rglob("*.json")):
        if CORE in path.parents or path.name == "index.json":
            continue
        wanted |= core_refs(path.read_text())

    full = json.loads((src / "_definitions.json").read_text())
    defs = full["$defs"]
    keep: set[str] = set()
    todo = sorted(wanted)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in defs:
            raise SystemExit(f"core definition {name} is not in {src}")
        keep.add(name)
        todo.extend(core_refs(json.dumps(defs[name])) - keep)
    pruned = {k: v for k, v in full.items() if k != "$defs"}
    pruned["$defs"] = {k: defs[k] for k in defs if k in keep}
    with open(CORE / "_definitions.json", "w") as f:
        json.dump(pruned, f, indent=1)
        f.write("\n")
    print(f"core: {len(KINDS)} kinds, {len(keep)} of {len(defs)} definitions")
    write_index()


def write_index() -> None:
    """index.json: "apiVersion kind" -> schema file (relative to k8s/schemas)."""
    index: dict[str, str] = {}
    for path in sorted(SCHEMAS.rglob("*.json")):
        if path.name in ("index.json", "_definitions.json") or "tools" in path.parts:
            continue
        schema = json.loads(path.read_text())
        props = schema.get("properties", {})
        try:
            api_version = props["apiVersion"]["enum"][0]
            kind = props["kind"]["enum"][0]
        except (KeyError, IndexError):
            raise SystemExit(f"{path}: no apiVersion/kind enum") from None
        key = f"{api_version} {kind}"
        if key in index:
            raise SystemExit(f"two schemas for {key}: {index[key]} and {path}")
        index[key] = path.relative_to(SCHEMAS).as_posix()
    with open(SCHEMAS / "index.json", "w") as f:
        json.dump(dict(sorted(index.items())), f, indent=1)
        f.write("\n")
    print(f"index: {len(index)} kinds")


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--index-only":
        write_index()
    elif len(sys.argv) == 2:
        main(Path(sys.argv[1]))
    else:
        raise SystemExit(__doc__)
