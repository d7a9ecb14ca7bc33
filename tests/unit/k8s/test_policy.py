"""The security policy checks of k8s/policy.py, run by k8s/validate.py on every overlay.

The rendered manifests pass them (test_manifests.py renders and validates every overlay);
here each check is shown to fail on a copy of the rendered objects weakened in one place:
a container that may escalate, Ray without token authentication, a Ray pod no NetworkPolicy
selects, the head's ports opened to everyone, Kafka egress on the wrong port, a Kafka Secret in
a pod that does not talk to Kafka.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"

Objs = list[dict[str, Any]]


def _load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_validate", K8S / "validate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


v = _load_validator()
policy = v.policy


@pytest.fixture(scope="module")
def rendered() -> Callable[[str], Objs]:
    try:
        kubectl = v.find_kubectl()
    except v.RenderError as exc:
        pytest.fail(f"{exc}; CI runs it before the tests")
    cache: dict[str, Objs] = {}

    def get(name: str) -> Objs:
        if name not in cache:
            cache[name] = v.render(K8S / name, kubectl)
        return copy.deepcopy(cache[name])

    return get


@pytest.fixture
def base(rendered: Callable[[str], Objs]) -> Objs:
    return rendered("base")


@pytest.fixture
def dev(rendered: Callable[[str], Objs]) -> Objs:
    return rendered("overlays/dev")


def find(objs: Objs, kind: str, name: str | None = None) -> dict[str, Any]:
    for o in objs:
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name):
            return o
    raise AssertionError(f"no {kind}/{name or '*'} rendered")


def errors_of(objs: Objs) -> str:
    return "\n".join(v.validate_objects(objs))


def head_pod(objs: Objs) -> dict[str, Any]:
    return find(objs, "RayCluster")["spec"]["headGroupSpec"]["template"]


def worker_pod(objs: Objs) -> dict[str, Any]:
    return find(objs, "RayCluster")["spec"]["workerGroupSpecs"][0]["template"]


def submitter_pod(objs: Objs) -> dict[str, Any]:
    return find(objs, "RayJob")["spec"]["submitterPodTemplate"]


# --------------------------------------------------------------------------- the manifests


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/gpu"])
def test_no_worker_pod_holds_the_kafka_credentials(
    overlay: str, rendered: Callable[[str], Objs]
) -> None:
    cluster = find(rendered(overlay), "RayCluster")
    for group in cluster["spec"]["workerGroupSpecs"]:
        text = str(group["template"])
        assert "streamlabel-kafka-credentials" not in text, group["groupName"]
        assert "SASL" not in text, group["groupName"]
    assert cluster["spec"]["authOptions"] == {"mode": "token"}


def test_the_manifests_pass_the_policy(base: Objs, dev: Objs) -> None:
    assert errors_of(base) == ""
    assert errors_of(dev) == ""


# --------------------------------------------------------------------------- hardened pods


def _container_sc(pod: dict[str, Any]) -> dict[str, Any]:
    sc: dict[str, Any] = pod["spec"]["containers"][0]["securityContext"]
    return sc


WEAKENINGS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "writable root": (
        lambda pod: _container_sc(pod).pop("readOnlyRootFilesystem"),
        "readOnlyRootFilesystem: must be true",
    ),
    "escalation": (
        lambda pod: _container_sc(pod).update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation: must be false",
    ),
    "capabilities kept": (
        lambda pod: _container_sc(pod).pop("capabilities"),
        "capabilities.drop: must drop ALL capabilities",
    ),
    "capability added": (
        lambda pod: _container_sc(pod)["capabilities"].update(add=["NET_ADMIN"]),
        "capabilities.add: must add no capability",
    ),
    "no seccomp": (
        lambda pod: pod["spec"]["securityContext"].pop("seccompProfile"),
        "needs a seccompProfile of type RuntimeDefault or Localhost",
    ),
    "unconfined seccomp": (
        lambda pod: pod["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "not 'Unconfined'",
    ),
    "root": (
        lambda pod: (
            pod["spec"]["securityContext"].update(runAsUser=0),
            _container_sc(pod).pop("runAsUser", None),
        ),
        "runAsNonRoot: must run as non-root",
    ),
    "root allowed": (
        lambda pod: (
            pod["spec"]["securityContext"].pop("runAsNonRoot"),
            _container_sc(pod).pop("runAsNonRoot"),
        ),
        "runAsNonRoot: must run as non-root",
    ),
    "privileged": (
        lambda pod: _container_sc(pod).update(privileged=True),
        "privileged: must not be privileged",
    ),
    "host network": (
        lambda pod: pod["spec"].update(hostNetwork=True),
        "hostNetwork: shares a host namespace",
    ),
}


@pytest.mark.parametrize("pod_of", [head_pod, worker_pod, submitter_pod], ids=lambda f: f.__name__)
@pytest.mark.parametrize("weakening", list(WEAKENINGS))
def test_a_weakened_security_context_fails(
    dev: Objs, pod_of: Callable[[Objs], dict[str, Any]], weakening: str
) -> None:
    weaken, message = WEAKENINGS[weakening]
    weaken(pod_of(dev))
    assert message in errors_of(dev)


def test_the_autoscaler_sidecar_must_be_hardened(dev: Objs) -> None:
    find(dev, "RayCluster")["spec"]["autoscalerOptions"].pop("securityContext")
    errors = errors_of(dev)
    assert "$.spec.autoscalerOptions.securityContext.allowPrivilegeEscalation: must be" in errors
    assert "$.spec.autoscalerOptions.securityContext.capabilities.drop: must drop ALL" in errors


# --------------------------------------------------------------------------- Ray token


@pytest.mark.parametrize("auth", [None, {"mode": "disabled"}])
def test_ray_without_token_authentication_fails(dev: Objs, auth: Any) -> None:
    spec = find(dev, "RayCluster")["spec"]
    if auth is None:
        del spec["authOptions"]
    else:
        spec["authOptions"] = auth
    assert "$.spec.authOptions.mode: Ray token authentication is off" in errors_of(dev)


# --------------------------------------------------------------------------- NetworkPolicies


def test_ray_pods_no_network_policy_selects_fail(dev: Objs) -> None:
    dev.remove(find(dev, "NetworkPolicy", "streamlabel-ray"))
    dev.remove(find(dev, "NetworkPolicy", "streamlabel-kafka-clients"))  # an Egress policy too
    errors = errors_of(dev)
    worker = "$.spec.workerGroupSpecs[0].template: no NetworkPolicy with policyType"
    assert f"{worker} Ingress selects this Ray pod" in errors
    assert f"{worker} Egress selects this Ray pod" in errors


def test_a_ray_pod_without_egress_policy_fails(dev: Objs) -> None:
    find(dev, "NetworkPolicy", "streamlabel-ray")["spec"]["policyTypes"] = ["Ingress"]
    dev.remove(find(dev, "NetworkPolicy", "streamlabel-kafka-clients"))
    errors = errors_of(dev)
    assert "workerGroupSpecs[0].template: no NetworkPolicy with policyType Egress" in errors
    assert "Ingress selects" not in errors


def test_the_submitter_needs_a_network_policy(dev: Objs) -> None:
    dev.remove(find(dev, "NetworkPolicy", "streamlabel-job-submitter"))
    errors = errors_of(dev)
    assert "RayJob/streamlabel-run: $.spec.submitterPodTemplate: no NetworkPolicy" in errors


OPEN_RULES = {
    "every source": ({"ports": [{"port": 8265}]}, "opens the Ray head's ports [8265]"),
    "every port": ({}, "opens the Ray head's ports [6379, 8265, 10001]"),
    "ipBlock": (
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "client"}]},
        "admits an ipBlock to the Ray head's ports [10001]",
    ),
    "every namespace": (
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": 6379}]},
        "admits pods of every namespace to the Ray head's ports [6379]",
    ),
    "every pod": (
        {"from": [{"podSelector": {}}], "ports": [{"port": 8000, "endPort": 9000}]},
        "admits every pod of a namespace to the Ray head's ports [8265]",
    ),
    "a namespace": (
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]},
        "admits every pod of a namespace to the Ray head's ports",
    ),
}


@pytest.mark.parametrize("rule", list(OPEN_RULES))
def test_head_ports_open_to_all_fail(dev: Objs, rule: str) -> None:
    ingress, message = OPEN_RULES[rule]
    find(dev, "NetworkPolicy", "streamlabel-ray-head")["spec"]["ingress"].append(ingress)
    assert "NetworkPolicy/streamlabel-ray-head: $.spec.ingress[1]" in errors_of(dev)
    assert message in errors_of(dev)


def test_other_ports_may_be_open_and_udp_does_not_count(dev: Objs) -> None:
    ingress = find(dev, "NetworkPolicy", "streamlabel-ray-head")["spec"]["ingress"]
    ingress.append({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 9464}]})
    ingress.append({"ports": [{"protocol": "UDP", "port": 8265}]})
    assert errors_of(dev) == ""


@pytest.mark.parametrize(("overlay", "port"), [("base", 9093), ("overlays/dev", 9092)])
def test_kafka_egress_on_another_port_than_the_settings_fails(
    rendered: Callable[[str], Objs], overlay: str, port: int
) -> None:
    objs = rendered(overlay)
    for rule in find(objs, "NetworkPolicy", "streamlabel-kafka-clients")["spec"]["egress"]:
        rule["ports"] = [{"protocol": "TCP", "port": 9999}]
    errors = errors_of(objs)
    assert f"no NetworkPolicy lets this Kafka client send to port {port}" in errors
    assert "headGroupSpec.template" in errors
    assert "workerGroupSpecs[0].template" in errors


def test_egress_to_the_ray_pods_does_not_count_as_kafka(dev: Objs) -> None:
    """The Ray pods' rule to each other allows every port, but only towards Ray pods."""
    dev.remove(find(dev, "NetworkPolicy", "streamlabel-kafka-clients"))
    assert "no NetworkPolicy lets this Kafka client send to port 9092" in errors_of(dev)


def test_egress_to_any_address_counts_as_kafka(base: Objs) -> None:
    rules = find(base, "NetworkPolicy", "streamlabel-kafka-clients")["spec"]["egress"]
    rules[0]["to"] = [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert errors_of(base) == ""


def test_kafka_ports_come_from_the_settings(base: Objs, dev: Objs) -> None:
    assert policy.kafka_ports(base) == {9093}
    assert policy.kafka_ports(dev) == {9092}


# --------------------------------------------------------------------------- Kafka Secrets


def test_kafka_credentials_in_a_worker_fail(base: Objs) -> None:
    head_env = head_pod(base)["spec"]["containers"][0]["env"]
    sasl = [e for e in head_env if e["name"].startswith("STREAMLABEL_KAFKA__SASL_")]
    assert sasl, "the head holds the credentials"
    worker_pod(base)["spec"]["containers"][0]["env"] += sasl
    assert "Secret 'streamlabel-kafka-credentials' belongs on the Ray head only" in errors_of(base)


def test_kafka_credentials_as_env_from_in_the_submitter_fail(base: Objs) -> None:
    container = submitter_pod(base)["spec"]["containers"][0]
    container["envFrom"] = [{"secretRef": {"name": "streamlabel-kafka-credentials"}}]
    errors = errors_of(base)
    assert "submitterPodTemplate.spec.containers[0].envFrom[0].secretRef.name" in errors


def test_kafka_ca_in_a_pod_that_is_no_kafka_client_fails(base: Objs) -> None:
    del worker_pod(base)["metadata"]["labels"][policy.KAFKA_CLIENT_LABEL]
    errors = errors_of(base)
    assert "workerGroupSpecs[0].template.spec.volumes[2].secret.secretName" in errors
    assert "Secret 'streamlabel-kafka-tls' is mounted in a pod that is no Kafka client" in errors


def test_kafka_ca_as_a_projected_volume_is_found(base: Objs) -> None:
    submitter_pod(base)["spec"]["volumes"].append(
        {"name": "ca", "projected": {"sources": [{"secret": {"name": "streamlabel-kafka-tls"}}]}}
    )
    assert "volumes[2].projected.sources[0].secret.name: Secret 'streamlabel-kafka-tls'" in (
        errors_of(base)
    )


def test_the_autoscaler_gets_no_kafka_secret(base: Objs) -> None:
    options = find(base, "RayCluster")["spec"]["autoscalerOptions"]
    options["envFrom"] = [{"secretRef": {"name": "streamlabel-kafka-credentials"}}]
    assert "the autoscaler is no Kafka client" in errors_of(base)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("ports", "covered"),
    [
        (None, True),
        ([], True),
        ([{"port": 8265}], True),
        ([{"protocol": "TCP"}], True),
        ([{"port": 8000, "endPort": 8300}], True),
        ([{"port": "dashboard"}], True),
        ([{"port": "client"}], False),
        ([{"port": 8266}], False),
        ([{"protocol": "UDP", "port": 8265}], False),
    ],
)
def test_covers(ports: Any, covered: bool) -> None:
    assert policy._covers(ports, 8265, "dashboard") is covered
