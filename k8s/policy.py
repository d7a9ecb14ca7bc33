"""Security policy checks on rendered manifests, run by k8s/validate.py after the schema checks.

Each check reports ``<kind>/<name>: <json path>: <message>`` through the validator's report:

1. hardened pods: every pod template (and a RayCluster's autoscaler sidecar) runs as non-root
   with ``allowPrivilegeEscalation: false``, ``capabilities.drop: [ALL]``, no added capability,
   a RuntimeDefault/Localhost seccomp profile, no host namespaces and (pod templates) a
   read-only root filesystem;
2. Ray token authentication: every RayCluster spec sets ``authOptions.mode: token``;
3. NetworkPolicies: every pod of a Ray kind (RayCluster/RayJob/RayService) is selected by a
   policy with policyType Ingress and one with Egress (so whatever no rule allows is denied);
   no ingress rule that covers a Ray head's GCS, dashboard or client port admits every source,
   an ipBlock, or every pod of a namespace;
4. Kafka: only pods labelled ``streamlabel.io/kafka-client: "true"`` reference a Kafka Secret,
   only Ray head pods (the driver) the credentials, and every such pod may send to the ports
   of ``kafka.bootstrap_servers`` in the rendered settings file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

KAFKA_CLIENT_LABEL = "streamlabel.io/kafka-client"
# Only the driver (on the Ray head) reads the SASL credentials; it hands them to the actors.
KAFKA_CREDENTIAL_SECRETS = frozenset({"streamlabel-kafka-credentials"})
# Any Kafka client may need these (the CA that signs the brokers).
KAFKA_CLIENT_SECRETS = frozenset({"streamlabel-kafka-tls"})
SETTINGS_KEY = "streamlabel.toml"
RAY_KINDS = ("RayCluster", "RayJob", "RayService")
# The head's ports that must never be open to everyone: number -> KubeRay's port name.
RAY_HEAD_PORTS = {6379: "gcs-server", 8265: "dashboard", 10001: "client"}
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")

Obj = dict[str, Any]


class PodTemplate(Protocol):
    """What the validator's ``Pod`` offers (k8s/validate.py)."""

    owner: Obj
    path: str
    labels: dict[str, str]
    spec: dict[str, Any]
    namespace: str

    def containers(self) -> Iterator[tuple[str, dict[str, Any]]]: ...


class Reporter(Protocol):
    def error(self, obj: Obj, path: str, message: str) -> None: ...


Matches = Callable[[Any, dict[str, str]], bool]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _meta(obj: Obj) -> dict[str, Any]:
    return _dict(obj.get("metadata"))


def _ns(obj: Obj) -> str:
    return str(_meta(obj).get("namespace") or "")


def _policy_types(np: Obj) -> set[str]:
    spec = _dict(np.get("spec"))
    if "policyTypes" in spec:
        return {str(t) for t in _list(spec["policyTypes"])}
    return {"Ingress", "Egress"} if "egress" in spec else {"Ingress"}


def _covers(ports: Any, number: int, name: str | None) -> bool:
    """Whether a NetworkPolicy rule's ``ports`` admit TCP ``number`` (or its port name)."""
    entries = _list(ports)
    if not entries:
        return True  # no ports: every port
    for p in entries:
        if not isinstance(p, dict) or p.get("protocol", "TCP") != "TCP":
            continue
        port = p.get("port")
        if port is None:
            return True
        if isinstance(port, int) and port <= number <= int(p.get("endPort") or port):
            return True
        if isinstance(port, str) and name is not None and port == name:
            return True
    return False


def _open_peer(peer: Any) -> str | None:
    """Why a ``from`` peer admits more than named pods, or None."""
    if not isinstance(peer, dict):
        return "is not an object"
    if "ipBlock" in peer:
        return "admits an ipBlock"
    if "namespaceSelector" in peer and not peer["namespaceSelector"]:
        return "admits pods of every namespace"
    if not peer.get("podSelector"):
        return "admits every pod of a namespace"
    return None


def _secret_refs(pod: PodTemplate) -> Iterator[tuple[str, str]]:
    """``(json path, Secret name)`` for every Secret a pod template references."""
    for path, c in pod.containers():
        yield from _env_secret_refs(path, c)
    base = f"{pod.path}.spec"
    for i, v in enumerate(_list(pod.spec.get("volumes"))):
        name = _dict(_dict(v).get("secret")).get("secretName")
        if isinstance(name, str):
            yield f"{base}.volumes[{i}].secret.secretName", name
        for j, src in enumerate(_list(_dict(_dict(v).get("projected")).get("sources"))):
            name = _dict(_dict(src).get("secret")).get("name")
            if isinstance(name, str):
                yield f"{base}.volumes[{i}].projected.sources[{j}].secret.name", name


def _env_secret_refs(path: str, c: Any) -> Iterator[tuple[str, str]]:
    for i, env in enumerate(_list(_dict(c).get("env"))):
        name = _dict(_dict(_dict(env).get("valueFrom")).get("secretKeyRef")).get("name")
        if isinstance(name, str):
            yield f"{path}.env[{i}].valueFrom.secretKeyRef.name", name
    for i, src in enumerate(_list(_dict(c).get("envFrom"))):
        name = _dict(_dict(src).get("secretRef")).get("name")
        if isinstance(name, str):
            yield f"{path}.envFrom[{i}].secretRef.name", name


def _cluster_specs(obj: Obj) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = _dict(obj.get("spec"))
    if obj.get("kind") == "RayCluster":
        yield "$.spec", spec
    elif obj.get("kind") == "RayJob" and isinstance(spec.get("rayClusterSpec"), dict):
        yield "$.spec.rayClusterSpec", spec["rayClusterSpec"]
    elif obj.get("kind") == "RayService" and isinstance(spec.get("rayClusterConfig"), dict):
        yield "$.spec.rayClusterConfig", spec["rayClusterConfig"]


def kafka_ports(objs: list[Obj]) -> set[int]:
    """The ports of ``kafka.bootstrap_servers`` in every rendered settings ConfigMap."""
    ports: set[int] = set()
    for o in objs:
        text = _dict(o.get("data")).get(SETTINGS_KEY) if o.get("kind") == "ConfigMap" else None
        if not isinstance(text, str):
            continue
        try:
            servers = _dict(tomllib.loads(text).get("kafka")).get("bootstrap_servers")
        except tomllib.TOMLDecodeError:
            continue
        for server in str(servers or "").split(","):
            host, _, port = server.strip().rpartition(":")
            if host and port.isdigit():
                ports.add(int(port))
    return ports


class PolicyChecker:
    """The checks of this module over one rendered set of objects."""

    def __init__(
        self, objs: list[Obj], pods: list[PodTemplate], matches: Matches, report: Reporter
    ) -> None:
        self.objs = objs
        self.pods = pods
        self.matches = matches
        self.report = report
        self.policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]

    def run(self) -> None:
        for pod in self.pods:
            self.hardened(pod)
            self.kafka_secrets(pod)
        for o in self.objs:
            for path, spec in _cluster_specs(o):
                self.token_auth(o, path, spec)
                self.autoscaler(o, path, spec)
        self.network_policies()

    # -- 1. hardened securityContexts

    def hardened(self, pod: PodTemplate) -> None:
        o, base = pod.owner, f"{pod.path}.spec"
        pod_sc = _dict(pod.spec.get("securityContext"))
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.spec.get(key) is True:
                self.report.error(o, f"{base}.{key}", "shares a host namespace")
        for path, c in pod.containers():
            sc = _dict(c.get("securityContext"))
            self._container_context(o, path, sc, pod_sc)
            if sc.get("readOnlyRootFilesystem") is not True:
                self.report.error(
                    o,
                    f"{path}.securityContext.readOnlyRootFilesystem",
                    "must be true (mount an emptyDir where the container writes)",
                )

    def _container_context(
        self, o: Obj, path: str, sc: dict[str, Any], pod_sc: dict[str, Any]
    ) -> None:
        p = f"{path}.securityContext"
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True or sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            self.report.error(o, f"{p}.runAsNonRoot", "must run as non-root (runAsNonRoot: true)")
        if sc.get("allowPrivilegeEscalation") is not False:
            self.report.error(o, f"{p}.allowPrivilegeEscalation", "must be false")
        if sc.get("privileged") is True:
            self.report.error(o, f"{p}.privileged", "must not be privileged")
        caps = _dict(sc.get("capabilities"))
        if "ALL" not in _list(caps.get("drop")):
            self.report.error(o, f"{p}.capabilities.drop", "must drop ALL capabilities")
        if _list(caps.get("add")):
            self.report.error(o, f"{p}.capabilities.add", "must add no capability")
        seccomp = _dict(sc.get("seccompProfile") or pod_sc.get("seccompProfile")).get("type")
        if seccomp not in SECCOMP_TYPES:
            self.report.error(
                o,
                f"{p}.seccompProfile",
                f"needs a seccompProfile of type RuntimeDefault or Localhost (pod or container),"
                f" not {seccomp!r}",
            )

    def autoscaler(self, o: Obj, path: str, spec: dict[str, Any]) -> None:
        """KubeRay's autoscaler sidecar takes its securityContext from autoscalerOptions."""
        if spec.get("enableInTreeAutoscaling") is not True:
            return
        options = _dict(spec.get("autoscalerOptions"))
        head_sc = _dict(
            _dict(_dict(_dict(spec.get("headGroupSpec")).get("template")).get("spec")).get(
                "securityContext"
            )
        )
        self._container_context(
            o, f"{path}.autoscalerOptions", _dict(options.get("securityContext")), head_sc
        )
        for ref_path, name in _env_secret_refs(f"{path}.autoscalerOptions", options):
            if name in KAFKA_CREDENTIAL_SECRETS | KAFKA_CLIENT_SECRETS:
                self.report.error(
                    o, ref_path, f"the autoscaler is no Kafka client: Secret {name!r}"
                )

    # -- 2. Ray token authentication

    def token_auth(self, o: Obj, path: str, spec: dict[str, Any]) -> None:
        if _dict(spec.get("authOptions")).get("mode") != "token":
            self.report.error(
                o,
                f"{path}.authOptions.mode",
                "Ray token authentication is off: set authOptions.mode to 'token'",
            )

    # -- 3. NetworkPolicies

    def selecting(self, pod: PodTemplate, policy_type: str) -> list[Obj]:
        return [
            np
            for np in self.policies
            if _ns(np) == pod.namespace
            and policy_type in _policy_types(np)
            and self.matches(_dict(np.get("spec")).get("podSelector", {}), pod.labels)
        ]

    def network_policies(self) -> None:
        for pod in self.pods:
            if pod.owner.get("kind") not in RAY_KINDS:
                continue
            for policy_type in ("Ingress", "Egress"):
                if not self.selecting(pod, policy_type):
                    self.report.error(
                        pod.owner,
                        pod.path,
                        f"no NetworkPolicy with policyType {policy_type} selects this Ray pod "
                        f"(labels {sorted(pod.labels.items())})",
                    )
            if pod.labels.get("ray.io/node-type") == "head":
                self._head_ports(pod)
        ports = kafka_ports(self.objs)
        for pod in self.pods:
            if pod.labels.get(KAFKA_CLIENT_LABEL) == "true":
                self._kafka_egress(pod, ports)

    def _head_ports(self, pod: PodTemplate) -> None:
        names = dict(RAY_HEAD_PORTS)
        for _, c in pod.containers():
            for p in _list(c.get("ports")):
                if isinstance(p, dict) and p.get("containerPort") in names and p.get("name"):
                    names[int(p["containerPort"])] = str(p["name"])
        for np in self.selecting(pod, "Ingress"):
            for i, item in enumerate(_list(_dict(np.get("spec")).get("ingress"))):
                rule = _dict(item)
                hit = [n for n, name in names.items() if _covers(rule.get("ports"), n, name)]
                if not hit:
                    continue
                where = f"$.spec.ingress[{i}]"
                peers = _list(rule.get("from"))
                if not peers:
                    self.report.error(
                        np, f"{where}.from", f"opens the Ray head's ports {hit} to every source"
                    )
                for j, peer in enumerate(peers):
                    why = _open_peer(peer)
                    if why:
                        self.report.error(
                            np, f"{where}.from[{j}]", f"{why} to the Ray head's ports {hit}"
                        )

    def _kafka_egress(self, pod: PodTemplate, ports: set[int]) -> None:
        policies = self.selecting(pod, "Egress")
        if not policies:
            return  # egress unrestricted (a Ray pod without one is reported above)
        rules = [_dict(r) for np in policies for r in _list(_dict(np.get("spec")).get("egress"))]
        rules = [r for r in rules if self._leaves_ray(r)]
        for port in sorted(ports):
            if not any(_covers(r.get("ports"), port, None) for r in rules):
                self.report.error(
                    pod.owner,
                    pod.path,
                    f"no NetworkPolicy lets this Kafka client send to port {port} "
                    "(kafka.bootstrap_servers)",
                )

    def _leaves_ray(self, rule: dict[str, Any]) -> bool:
        """Whether an egress rule reaches beyond the Ray pods: any address, an ipBlock, another
        namespace, or pods that are not Ray pods (the brokers)."""
        peers = [_dict(peer) for peer in _list(rule.get("to"))]
        ray = [p.labels for p in self.pods if p.owner.get("kind") in RAY_KINDS]
        return not peers or any(
            "ipBlock" in peer
            or bool(peer.get("namespaceSelector"))
            or not any(self.matches(peer.get("podSelector", {}), labels) for labels in ray)
            for peer in peers
        )

    # -- 4. Kafka Secrets

    def kafka_secrets(self, pod: PodTemplate) -> None:
        client = pod.labels.get(KAFKA_CLIENT_LABEL) == "true"
        head = pod.labels.get("ray.io/node-type") == "head"
        for path, name in _secret_refs(pod):
            if name in KAFKA_CREDENTIAL_SECRETS and not (client and head):
                self.report.error(
                    pod.owner,
                    path,
                    f"Secret {name!r} belongs on the Ray head only (the driver hands the "
                    "credentials to the actors)",
                )
            elif name in KAFKA_CLIENT_SECRETS and not client:
                self.report.error(
                    pod.owner,
                    path,
                    f"Secret {name!r} is mounted in a pod that is no Kafka client "
                    f"(label {KAFKA_CLIENT_LABEL}: 'true')",
                )


def check(objs: list[Obj], pods: list[PodTemplate], matches: Matches, report: Reporter) -> None:
    """Runs every check of this module, reporting through ``report.error``."""
    PolicyChecker(objs, pods, matches, report).run()
