#!/usr/bin/env python3
"""Offline validation of the Kubernetes manifests (no cluster, no network).

    python k8s/validate.py [--kubectl .tools/bin/kubectl] [DIR ...]

Each DIR (default: k8s/base and every kustomization under k8s/overlays) is rendered with
``kubectl kustomize DIR`` (kubectl from scripts/install-kubectl.sh) and every rendered object is
checked:

1. its (apiVersion, kind) has a schema under k8s/schemas (index.json), so a wrong apiVersion
   fails;
2. it validates against that JSON schema (strict: unknown fields fail too);
3. label selectors select something: PodDisruptionBudget, Service, PodMonitor (and its
   endpoint port names), ServiceMonitor (against Services), the workloads' own templates,
   ``strimzi.io/cluster`` of Strimzi resources, a RayJob's clusterSelector; the pods are the pod
   templates of the workloads and of the RayClusters, with the labels KubeRay adds;
4. references from pod templates resolve to rendered objects: ConfigMaps, Secrets, PVCs,
   ServiceAccounts, volumes of volumeMounts, named ports of probes and preStop hooks. Secrets
   that an operator creates by hand (OPERATOR_SECRETS) are reported as NOTE lines instead;
5. the security policy of k8s/policy.py: hardened securityContexts, Ray token authentication,
   NetworkPolicies around the Ray pods (the head's ports not open to all, Kafka egress on the
   settings' port), Kafka Secrets only in the pods that talk to Kafka.

Prints ``OK <dir>: N objects`` per directory, or one line per error
(``<dir> <kind>/<name>: <json path>: <message>``), and exits 1 on any error.
Tests use :func:`render` and :func:`validate_objects`.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

K8S_DIR = Path(__file__).resolve().parent
REPO = K8S_DIR.parent
SCHEMAS = K8S_DIR / "schemas"
DEFAULT_KUBECTL = REPO / ".tools" / "bin" / "kubectl"
INSTALL_HINT = "run scripts/install-kubectl.sh (it installs kubectl v1.35.2 at .tools/bin/kubectl)"

# Secrets that the manifests reference but do not render: an operator creates them by hand
# (see the deployment docs). They are reported as NOTE lines, not as errors.
OPERATOR_SECRETS = frozenset(
    {"streamlabel-kafka-credentials", "streamlabel-kafka-tls", "streamlabel-ui-token"}
)

# Labels KubeRay puts on every Ray pod, besides the template's own (pod.go, labelPod).
RAY_HEAD_GROUP = "headgroup"
# Ports KubeRay adds to the head container when the template does not name them.
RAY_HEAD_DEFAULT_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")

Obj = dict[str, Any]


def _load_policy() -> ModuleType:
    """k8s/policy.py, loaded by path: this file runs as a script and is loaded by path in tests."""
    spec = importlib.util.spec_from_file_location("k8s_policy", K8S_DIR / "policy.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


policy = _load_policy()


class RenderError(RuntimeError):
    """kubectl is missing or ``kubectl kustomize`` failed."""


# --------------------------------------------------------------------------- rendering


def find_kubectl(kubectl: str | os.PathLike[str] | None = None) -> Path:
    """The kubectl to render with: the argument, $KUBECTL, or .tools/bin/kubectl."""
    path = Path(kubectl or os.environ.get("KUBECTL") or DEFAULT_KUBECTL)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RenderError(f"kubectl not found at {path}: {INSTALL_HINT}")
    return path


def render(
    directory: str | os.PathLike[str], kubectl: str | os.PathLike[str] | None = None
) -> list[Obj]:
    """Renders a kustomization directory with ``kubectl kustomize`` into a list of objects."""
    exe = find_kubectl(kubectl)
    proc = subprocess.run(
        [str(exe), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory} failed:\n{proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


def default_dirs() -> list[Path]:
    """k8s/base and every kustomization directly under k8s/overlays."""
    dirs = [K8S_DIR / "base"]
    overlays = K8S_DIR / "overlays"
    if overlays.is_dir():
        dirs += sorted(
            d
            for d in overlays.iterdir()
            if any(
                (d / n).is_file()
                for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
            )
        )
    return dirs


# --------------------------------------------------------------------------- schemas


def _no_retrieve(uri: str) -> Resource:
    raise NoSuchResource(ref=uri)


@functools.cache
def _schema_store() -> tuple[dict[str, str], Registry]:
    index: dict[str, str] = json.loads((SCHEMAS / "index.json").read_text())
    resources = []
    for path in SCHEMAS.rglob("*.json"):
        if "tools" in path.relative_to(SCHEMAS).parts or path.name == "index.json":
            continue
        contents = json.loads(path.read_text())
        if "$id" in contents:
            resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry = Registry(retrieve=_no_retrieve).with_resources(resources)  # type: ignore[call-arg]
    return index, registry


@functools.cache
def _validator(api_version: str, kind: str) -> Draft202012Validator | None:
    index, registry = _schema_store()
    rel = index.get(f"{api_version} {kind}")
    if rel is None:
        return None
    schema = json.loads((SCHEMAS / rel).read_text())
    return Draft202012Validator(schema, registry=registry)


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(error: ValidationError) -> str:
    validator = error.validator
    if validator == "required" or validator == "additionalProperties":
        return error.message
    if validator in ("enum", "const"):
        return f"{_short(error.instance)} is not one of {_short(error.validator_value)}"
    if validator == "type":
        return f"{_short(error.instance)} is not of type {_short(error.validator_value)}"
    if validator == "not" and list(error.validator_value) == ["required"]:
        return " and ".join(error.validator_value["required"]) + " must not both be set"
    if validator == "not":
        return f"{_short(error.instance, 60)} must not match {_short(error.validator_value)}"
    return f"{error.message[:200]}"


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    """For anyOf/oneOf failures, the most relevant error of the branches."""
    if error.context:
        yield from _leaf_errors(best_match(error.context))
    else:
        yield error


# --------------------------------------------------------------------------- the checks


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _ref(obj: Obj) -> str:
    return f"{obj.get('kind', '?')}/{_meta(obj).get('name', '?')}"


def _ns(obj: Obj) -> str:
    return str(_meta(obj).get("namespace") or "")


def _labels(obj: Obj) -> dict[str, str]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


def _get(obj: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or key >= len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[key] if isinstance(key, int) else obj.get(key)
    return obj


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class Pod:
    """A pod template as it will run: its owner, where it is, its labels and spec."""

    owner: Obj
    path: str  # JSON path of the template in the owner
    labels: dict[str, str]
    spec: dict[str, Any]
    namespace: str
    extra_ports: dict[str, int] = field(default_factory=dict)  # added by an operator

    def containers(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for i, c in enumerate(_list(self.spec.get(key))):
                if isinstance(c, dict):
                    yield f"{self.path}.spec.{key}[{i}]", c

    def port_names(self) -> set[str]:
        names = set(self.extra_ports)
        for _, c in self.containers():
            names |= {
                p.get("name")
                for p in _list(c.get("ports"))
                if isinstance(p, dict) and p.get("name")
            }
        return names


def _ray_pods(owner: Obj, spec: Any, base: str, cluster: str | None) -> Iterator[Pod]:
    """Head and worker pods of a RayClusterSpec, with the labels KubeRay adds."""
    if not isinstance(spec, dict):
        return
    groups: list[tuple[str, str, str, Any]] = [
        (
            f"{base}.headGroupSpec.template",
            "head",
            RAY_HEAD_GROUP,
            _get(spec, "headGroupSpec", "template"),
        )
    ]
    for i, group in enumerate(_list(spec.get("workerGroupSpecs"))):
        name = str(_get(group, "groupName") or "")
        groups.append(
            (f"{base}.workerGroupSpecs[{i}].template", "worker", name, _get(group, "template"))
        )
    for path, node_type, group, template in groups:
        if not isinstance(template, dict):
            continue
        labels = dict(_labels(template))
        labels.setdefault("app.kubernetes.io/name", "kuberay")
        labels.setdefault("app.kubernetes.io/created-by", "kuberay-operator")
        if cluster:
            labels.setdefault("ray.io/identifier", f"{cluster}-{node_type}")
            labels["ray.io/cluster"] = cluster
        labels["ray.io/node-type"] = node_type
        labels["ray.io/group"] = group
        labels["ray.io/is-ray-node"] = "yes"
        pod_spec = template.get("spec") if isinstance(template.get("spec"), dict) else {}
        yield Pod(
            owner,
            path,
            labels,
            pod_spec,
            _ns(owner),
            extra_ports=dict(RAY_HEAD_DEFAULT_PORTS) if node_type == "head" else {},
        )


def pods_of(obj: Obj) -> Iterator[Pod]:
    """The pod templates of an object (none for kinds that make no pods)."""
    kind = obj.get("kind")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}

    def template(t: Any, path: str) -> Iterator[Pod]:
        if isinstance(t, dict):
            pod_spec = t.get("spec") if isinstance(t.get("spec"), dict) else {}
            yield Pod(obj, path, dict(_labels(t)), pod_spec, _ns(obj))

    if kind in WORKLOAD_KINDS:
        yield from template(spec.get("template"), "$.spec.template")
    elif kind == "CronJob":
        yield from template(
            _get(spec, "jobTemplate", "spec", "template"), "$.spec.jobTemplate.spec.template"
        )
    elif kind == "Pod":
        yield Pod(obj, "$", dict(_labels(obj)), spec, _ns(obj))
    elif kind == "RayCluster":
        yield from _ray_pods(obj, spec, "$.spec", str(_meta(obj).get("name") or ""))
    elif kind == "RayJob":
        yield from _ray_pods(obj, spec.get("rayClusterSpec"), "$.spec.rayClusterSpec", None)
        yield from template(spec.get("submitterPodTemplate"), "$.spec.submitterPodTemplate")
    elif kind == "RayService":
        yield from _ray_pods(obj, spec.get("rayClusterConfig"), "$.spec.rayClusterConfig", None)


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels + matchExpressions) matches the labels."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in _list(selector.get("matchExpressions")):
        key, op = expr.get("key"), expr.get("operator")
        values = [str(v) for v in _list(expr.get("values"))]
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def _describe(selector: Any) -> str:
    return json.dumps(selector, sort_keys=True)


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def error(self, obj: Obj, path: str, message: str) -> None:
        self.errors.append(f"{_ref(obj)}: {path}: {message}")

    def note(self, obj: Obj, path: str, message: str) -> None:
        self.notes.append(f"{_ref(obj)}: {path}: {message}")


class _Checker:
    def __init__(self, objs: list[Obj], report: Report) -> None:
        self.objs = [o for o in objs if isinstance(o, dict)]
        self.report = report
        self.names: dict[tuple[str, str], set[str]] = {}
        for o in self.objs:
            self.names.setdefault((str(o.get("kind")), _ns(o)), set()).add(
                str(_meta(o).get("name"))
            )
        self.pods = [p for o in self.objs for p in pods_of(o)]

    def exists(self, kind: str, ns: str, name: str) -> bool:
        return name in self.names.get((kind, ns), set())

    def of_kind(self, *kinds: str) -> Iterator[Obj]:
        return (o for o in self.objs if o.get("kind") in kinds)

    # -- schema

    def schemas(self) -> None:
        for o in self.objs:
            api_version, kind = o.get("apiVersion"), o.get("kind")
            if not _meta(o).get("name"):
                self.report.error(o, "$.metadata.name", "missing object name")
            validator = _validator(str(api_version), str(kind))
            if validator is None:
                self.report.error(o, "$", f"no schema for apiVersion {api_version} kind {kind}")
                continue
            seen = set()
            for top in validator.iter_errors(o):
                for e in _leaf_errors(top):
                    line = (e.json_path, _message(e))
                    if line not in seen:
                        seen.add(line)
                        self.report.error(o, *line)

    # -- selectors

    def selectors(self) -> None:
        for o in self.of_kind("PodDisruptionBudget"):
            sel = _get(o, "spec", "selector")
            if isinstance(sel, dict) and not self._pods_matching(sel, _ns(o)):
                self.report.error(o, "$.spec.selector", f"selects no pod: {_describe(sel)}")
        for o in self.of_kind("Service"):
            self._service(o)
        for o in self.of_kind(*WORKLOAD_KINDS):
            sel = _get(o, "spec", "selector")
            labels = _labels(_get(o, "spec", "template") or {})
            if isinstance(sel, dict) and not selector_matches(sel, labels):
                self.report.error(
                    o,
                    "$.spec.selector",
                    f"does not match the pod template's labels {_describe(labels)}",
                )
        for o in self.of_kind("PodMonitor"):
            self._pod_monitor(o)
        for o in self.of_kind("ServiceMonitor"):
            self._service_monitor(o)
        for o in self.of_kind("KafkaTopic", "KafkaNodePool", "KafkaUser"):
            cluster = _labels(o).get("strimzi.io/cluster")
            if not cluster:
                self.report.error(o, "$.metadata.labels", "no strimzi.io/cluster label")
            elif not self.exists("Kafka", _ns(o), cluster):
                self.report.error(
                    o,
                    "$.metadata.labels['strimzi.io/cluster']",
                    f"no rendered Kafka named {cluster!r}",
                )
        for o in self.of_kind("RayJob"):
            self._ray_job(o)

    def _pods_matching(self, selector: Any, ns: str | None) -> list[Pod]:
        return [
            p
            for p in self.pods
            if (ns is None or p.namespace == ns) and selector_matches(selector, p.labels)
        ]

    def _service(self, o: Obj) -> None:
        sel = _get(o, "spec", "selector")
        if not isinstance(sel, dict) or not sel:
            return  # a Service without selector has its endpoints managed elsewhere
        pods = self._pods_matching({"matchLabels": sel}, _ns(o))
        if not pods:
            self.report.error(o, "$.spec.selector", f"selects no pod: {_describe(sel)}")
            return
        names = set().union(*(p.port_names() for p in pods))
        for i, port in enumerate(_list(_get(o, "spec", "ports"))):
            target = _get(port, "targetPort")
            if isinstance(target, str) and target not in names:
                self.report.error(
                    o,
                    f"$.spec.ports[{i}].targetPort",
                    f"no selected pod has a port named {target!r}",
                )

    def _monitor_namespaces(self, o: Obj) -> set[str] | None:
        ns_sel = _get(o, "spec", "namespaceSelector")
        if isinstance(ns_sel, dict) and ns_sel.get("any"):
            return None
        if isinstance(ns_sel, dict) and ns_sel.get("matchNames"):
            return {str(n) for n in ns_sel["matchNames"]}
        return {_ns(o)}

    def _pod_monitor(self, o: Obj) -> None:
        sel = _get(o, "spec", "selector")
        namespaces = self._monitor_namespaces(o)
        pods = [
            p
            for p in self.pods
            if (namespaces is None or p.namespace in namespaces) and selector_matches(sel, p.labels)
        ]
        if not pods:
            self.report.error(o, "$.spec.selector", f"selects no pod: {_describe(sel)}")
            return
        names = set().union(*(p.port_names() for p in pods))
        for i, ep in enumerate(_list(_get(o, "spec", "podMetricsEndpoints"))):
            port = _get(ep, "port")
            if isinstance(port, str) and port not in names:
                self.report.error(
                    o,
                    f"$.spec.podMetricsEndpoints[{i}].port",
                    f"no selected pod has a container port named {port!r} (ports: {sorted(names)})",
                )

    def _service_monitor(self, o: Obj) -> None:
        sel = _get(o, "spec", "selector")
        namespaces = self._monitor_namespaces(o)
        services = [
            s
            for s in self.of_kind("Service")
            if (namespaces is None or _ns(s) in namespaces) and selector_matches(sel, _labels(s))
        ]
        if not services:
            self.report.error(o, "$.spec.selector", f"selects no Service: {_describe(sel)}")
            return
        names = {_get(p, "name") for s in services for p in _list(_get(s, "spec", "ports"))}
        for i, ep in enumerate(_list(_get(o, "spec", "endpoints"))):
            port = _get(ep, "port")
            if isinstance(port, str) and port not in names:
                self.report.error(
                    o,
                    f"$.spec.endpoints[{i}].port",
                    f"no selected Service has a port named {port!r}",
                )

    def _ray_job(self, o: Obj) -> None:
        sel = _get(o, "spec", "clusterSelector")
        if not isinstance(sel, dict) or not sel:
            return
        name = sel.get("ray.io/cluster")
        if not name:
            # KubeRay looks the cluster up by this key
            self.report.error(
                o, "$.spec.clusterSelector", "has no 'ray.io/cluster' key (KubeRay needs it)"
            )
        clusters = [
            c
            for c in self.of_kind("RayCluster")
            if _ns(c) == _ns(o)
            and all(
                {**_labels(c), "ray.io/cluster": str(_meta(c).get("name"))}.get(k) == str(v)
                for k, v in sel.items()
            )
        ]
        if not clusters:
            self.report.error(
                o, "$.spec.clusterSelector", f"matches no rendered RayCluster: {_describe(sel)}"
            )

    # -- references from pod templates

    def references(self) -> None:
        for pod in self.pods:
            self._pod_refs(pod)
        for o in self.of_kind("RayCluster"):
            self._env_refs(
                o, _ns(o), "$.spec.autoscalerOptions", _get(o, "spec", "autoscalerOptions")
            )
        for o in self.of_kind("RoleBinding", "ClusterRoleBinding"):
            self._binding(o)
        for o in self.of_kind("ScaledObject"):
            self._scaled_object(o)

    def _secret(self, owner: Obj, ns: str, path: str, name: Any, optional: Any = False) -> None:
        if not isinstance(name, str) or self.exists("Secret", ns, name):
            return
        if name in OPERATOR_SECRETS:
            self.report.note(
                owner, path, f"Secret {name!r} is created by the operator (not rendered)"
            )
        elif optional is True:
            self.report.note(owner, path, f"optional Secret {name!r} is not rendered")
        else:
            self.report.error(
                owner, path, f"Secret {name!r} is not rendered and not operator-provided"
            )

    def _config_map(self, owner: Obj, ns: str, path: str, name: Any, optional: Any = False) -> None:
        if not isinstance(name, str) or self.exists("ConfigMap", ns, name):
            return
        if optional is True:
            self.report.note(owner, path, f"optional ConfigMap {name!r} is not rendered")
        else:
            self.report.error(owner, path, f"ConfigMap {name!r} is not rendered")

    def _env_refs(self, owner: Obj, ns: str, path: str, c: Any) -> None:
        if not isinstance(c, dict):
            return
        for i, env in enumerate(_list(c.get("env"))):
            src = _get(env, "valueFrom") or {}
            p = f"{path}.env[{i}].valueFrom"
            if isinstance(src.get("secretKeyRef"), dict):
                r = src["secretKeyRef"]
                self._secret(owner, ns, f"{p}.secretKeyRef.name", r.get("name"), r.get("optional"))
            if isinstance(src.get("configMapKeyRef"), dict):
                r = src["configMapKeyRef"]
                self._config_map(
                    owner, ns, f"{p}.configMapKeyRef.name", r.get("name"), r.get("optional")
                )
        for i, src in enumerate(_list(c.get("envFrom"))):
            p = f"{path}.envFrom[{i}]"
            if isinstance(_get(src, "secretRef"), dict):
                r = src["secretRef"]
                self._secret(owner, ns, f"{p}.secretRef.name", r.get("name"), r.get("optional"))
            if isinstance(_get(src, "configMapRef"), dict):
                r = src["configMapRef"]
                self._config_map(
                    owner, ns, f"{p}.configMapRef.name", r.get("name"), r.get("optional")
                )

    def _pod_refs(self, pod: Pod) -> None:
        o, ns, spec, base = pod.owner, pod.namespace, pod.spec, f"{pod.path}.spec"
        sa = spec.get("serviceAccountName")
        if isinstance(sa, str) and sa != "default" and not self.exists("ServiceAccount", ns, sa):
            self.report.error(
                o, f"{base}.serviceAccountName", f"ServiceAccount {sa!r} is not rendered"
            )
        for i, s in enumerate(_list(spec.get("imagePullSecrets"))):
            self._secret(o, ns, f"{base}.imagePullSecrets[{i}].name", _get(s, "name"))
        volume_names = set()
        for i, v in enumerate(_list(spec.get("volumes"))):
            if not isinstance(v, dict):
                continue
            volume_names.add(v.get("name"))
            p = f"{base}.volumes[{i}]"
            if isinstance(v.get("configMap"), dict):
                r = v["configMap"]
                self._config_map(o, ns, f"{p}.configMap.name", r.get("name"), r.get("optional"))
            if isinstance(v.get("secret"), dict):
                r = v["secret"]
                self._secret(
                    o, ns, f"{p}.secret.secretName", r.get("secretName"), r.get("optional")
                )
            if isinstance(v.get("persistentVolumeClaim"), dict):
                claim = v["persistentVolumeClaim"].get("claimName")
                if isinstance(claim, str) and not self.exists("PersistentVolumeClaim", ns, claim):
                    self.report.error(
                        o,
                        f"{p}.persistentVolumeClaim.claimName",
                        f"PersistentVolumeClaim {claim!r} is not rendered",
                    )
            for j, source in enumerate(_list(_get(v, "projected", "sources"))):
                q = f"{p}.projected.sources[{j}]"
                if isinstance(_get(source, "configMap"), dict):
                    r = source["configMap"]
                    self._config_map(o, ns, f"{q}.configMap.name", r.get("name"), r.get("optional"))
                if isinstance(_get(source, "secret"), dict):
                    r = source["secret"]
                    self._secret(o, ns, f"{q}.secret.name", r.get("name"), r.get("optional"))
        if o.get("kind") == "StatefulSet":
            for t in _list(_get(o, "spec", "volumeClaimTemplates")):
                volume_names.add(_get(t, "metadata", "name"))
        for path, c in pod.containers():
            if not c.get("image"):
                # optional in the OpenAPI schema, required by the API server's validation
                self.report.error(o, f"{path}.image", "container has no image")
            self._env_refs(o, ns, path, c)
            for j, m in enumerate(_list(c.get("volumeMounts"))):
                name = _get(m, "name")
                if name not in volume_names:
                    self.report.error(
                        o, f"{path}.volumeMounts[{j}].name", f"no volume named {name!r} in the pod"
                    )
            self._named_ports(pod, path, c)

    def _named_ports(self, pod: Pod, path: str, c: dict[str, Any]) -> None:
        names = {p.get("name") for p in _list(c.get("ports")) if isinstance(p, dict)}
        if pod.extra_ports and path.endswith("containers[0]"):
            names |= set(pod.extra_ports)
        handlers: list[tuple[str, Any]] = [
            (f"{path}.{probe}", c.get(probe))
            for probe in ("livenessProbe", "readinessProbe", "startupProbe")
        ]
        handlers += [
            (f"{path}.lifecycle.{hook}", _get(c, "lifecycle", hook))
            for hook in ("preStop", "postStart")
        ]
        for p, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                port = _get(handler, action, "port")
                if isinstance(port, str) and port not in names:
                    self.report.error(
                        pod.owner,
                        f"{p}.{action}.port",
                        f"container has no port named {port!r}"
                        f" (ports: {sorted(n for n in names if n)})",
                    )

    def _binding(self, o: Obj) -> None:
        role = _get(o, "roleRef") or {}
        role_kind, role_name = role.get("kind"), role.get("name")
        ns = _ns(o) if role_kind == "Role" else ""
        if role_kind == "Role" and not self.exists("Role", ns, str(role_name)):
            self.report.error(o, "$.roleRef.name", f"Role {role_name!r} is not rendered")
        for i, subject in enumerate(_list(o.get("subjects"))):
            if _get(subject, "kind") == "ServiceAccount":
                sa_ns = str(_get(subject, "namespace") or _ns(o))
                name = str(_get(subject, "name"))
                # only ServiceAccounts of the rendered namespaces can be checked
                rendered_ns = sa_ns == _ns(o) or any(
                    _ns(s) == sa_ns for s in self.of_kind("ServiceAccount")
                )
                if rendered_ns and not self.exists("ServiceAccount", sa_ns, name):
                    self.report.error(
                        o, f"$.subjects[{i}].name", f"ServiceAccount {name!r} is not rendered"
                    )

    def _scaled_object(self, o: Obj) -> None:
        target = _get(o, "spec", "scaleTargetRef") or {}
        kind = target.get("kind") or "Deployment"
        if target.get("name") and not self.exists(kind, _ns(o), str(target["name"])):
            self.report.error(
                o, "$.spec.scaleTargetRef", f"{kind} {target['name']!r} is not rendered"
            )
        for i, trigger in enumerate(_list(_get(o, "spec", "triggers"))):
            auth = _get(trigger, "authenticationRef")
            if isinstance(auth, dict) and auth.get("name"):
                kind = auth.get("kind") or "TriggerAuthentication"
                ns = _ns(o) if kind == "TriggerAuthentication" else ""
                if not self.exists(kind, ns, str(auth["name"])):
                    self.report.error(
                        o,
                        f"$.spec.triggers[{i}].authenticationRef",
                        f"{kind} {auth['name']!r} is not rendered",
                    )


def check(objs: Iterable[Obj]) -> Report:
    """All checks on a rendered set of objects: the errors and the NOTE lines."""
    report = Report()
    checker = _Checker(list(objs), report)
    checker.schemas()
    checker.selectors()
    checker.references()
    policy.check(checker.objs, checker.pods, selector_matches, report)
    return report


def validate_objects(objs: Iterable[Obj]) -> list[str]:
    """The error strings (``<kind>/<name>: <json path>: <message>``); empty when valid."""
    return check(objs).errors


# --------------------------------------------------------------------------- CLI


def _label(directory: Path) -> str:
    try:
        return str(directory.resolve().relative_to(REPO))
    except ValueError:
        return str(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kubectl", help=f"kubectl to render with (default: {DEFAULT_KUBECTL.relative_to(REPO)})"
    )
    parser.add_argument("dirs", nargs="*", type=Path, help="kustomization directories")
    args = parser.parse_args(argv)
    dirs = args.dirs or default_dirs()
    failed = False
    for directory in dirs:
        label = _label(directory)
        try:
            objs = render(directory, args.kubectl)
        except RenderError as exc:
            print(f"{label}: {exc}")
            failed = True
            continue
        report = check(objs)
        for note in report.notes:
            print(f"NOTE {label} {note}")
        for error in report.errors:
            print(f"{label} {error}")
        if report.errors:
            failed = True
        else:
            print(f"OK {label}: {len(objs)} objects")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
