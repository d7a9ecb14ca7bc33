"""Offline checks of the Kubernetes manifests under k8s/ (k8s/validate.py).

Renders k8s/base and every overlay with kubectl kustomize (kubectl from
scripts/install-kubectl.sh; a missing kubectl FAILS these tests, it never skips them) and
validates the objects against the vendored schemas plus the cross-object checks. The negative
tests mutate copies of the rendered dev/base objects and expect the validator to object.
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
FIXTURES = Path(__file__).resolve().parent / "fixtures"

TOPICS = {  # topic -> (partitions, compacted), as k8s-spec.md sets them
    "sl.items": (4, False),
    "sl.labels": (4, True),
    "sl.feedback": (4, False),
    "sl.unknowns": (4, False),
    "sl.classes": (1, True),
    "sl.alerts": (1, False),
    "sl.dlq": (4, False),
}


def _load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_validate", K8S / "validate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


v = _load_validator()


def _manifest_dirs() -> list[Path]:
    return v.default_dirs()


def _id(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.fixture(scope="module")
def kubectl() -> Path:
    try:
        return v.find_kubectl()
    except v.RenderError as exc:
        pytest.fail(f"{exc}; CI runs it before the tests")


@pytest.fixture(scope="module")
def rendered(kubectl: Path) -> Callable[[Path], list[dict[str, Any]]]:
    """Renders a directory once per module; tests get deep copies they may change."""
    cache: dict[Path, list[dict[str, Any]]] = {}

    def get(directory: Path) -> list[dict[str, Any]]:
        if directory not in cache:
            cache[directory] = v.render(directory, kubectl)
        return copy.deepcopy(cache[directory])

    return get


@pytest.fixture
def dev(rendered: Callable[[Path], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered(K8S / "overlays" / "dev")


@pytest.fixture
def base(rendered: Callable[[Path], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered(K8S / "base")


@pytest.fixture
def mixed(dev: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dev's objects (Strimzi included) plus base's PodDisruptionBudget, which dev drops."""
    return [*dev, find(base, "PodDisruptionBudget")]


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for o in objs:
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name):
            return o
    raise AssertionError(f"no {kind}/{name or '*'} rendered")


def errors_of(objs: list[dict[str, Any]]) -> str:
    return "\n".join(v.validate_objects(objs))


def worker_container(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]


def head_container(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


# --------------------------------------------------------------------------- the manifests


def test_manifest_dirs_exist() -> None:
    names = {_id(d) for d in _manifest_dirs()}
    assert {"k8s/base", "k8s/overlays/dev", "k8s/overlays/gpu"} <= names


@pytest.mark.parametrize("directory", _manifest_dirs(), ids=_id)
def test_renders_and_validates(
    directory: Path, rendered: Callable[[Path], list[dict[str, Any]]]
) -> None:
    objs = rendered(directory)
    assert objs, f"{_id(directory)} renders no object"
    assert v.validate_objects(objs) == []


def test_dev_overlay_has_a_kafka_topic_per_topic(dev: list[dict[str, Any]]) -> None:
    topics = {t["spec"].get("topicName"): t for t in dev if t["kind"] == "KafkaTopic"}
    assert set(topics) == set(TOPICS)
    for name, (partitions, compacted) in TOPICS.items():
        spec = topics[name]["spec"]
        assert spec.get("partitions") == partitions, name
        policy = (spec.get("config") or {}).get("cleanup.policy")
        assert (policy == "compact") is compacted, f"{name}: cleanup.policy {policy!r}"
        assert topics[name]["metadata"]["labels"]["strimzi.io/cluster"] == "streamlabel-kafka"


def test_gpu_overlay_adds_one_gpu_group_on_the_cuda_image(
    rendered: Callable[[Path], list[dict[str, Any]]],
) -> None:
    cluster = find(rendered(K8S / "overlays" / "gpu"), "RayCluster")
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"workers", "gpu"}
    gpu = groups["gpu"]
    pod = gpu["template"]["spec"]
    container = pod["containers"][0]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert str(container["resources"]["requests"]["nvidia.com/gpu"]) == "1"
    assert container["image"].endswith("-cuda")
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    # room for the embedder (1 Ray CPU) and three stream workers (2 each)
    assert int(gpu["rayStartParams"]["num-cpus"]) == 1 + 3 * 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert gpu["minReplicas"] == gpu["maxReplicas"] == 1
    # the CPU group and the head get no GPU and keep the CPU image
    for c in (worker_container(cluster), head_container(cluster)):
        assert "nvidia.com/gpu" not in str(c.get("resources"))
        assert not c["image"].endswith("-cuda")


def test_pdb_keeps_a_worker_and_never_blocks_a_drain(base: list[dict[str, Any]]) -> None:
    """A RayCluster has no /scale subresource: only an integer minAvailable works, and
    it must stay below the group's minimum or a node drain waits forever."""
    pdb = find(base, "PodDisruptionBudget")["spec"]
    assert "maxUnavailable" not in pdb
    assert isinstance(pdb["minAvailable"], int)
    group = find(base, "RayCluster")["spec"]["workerGroupSpecs"][0]
    assert pdb["minAvailable"] < group["minReplicas"]


def test_dev_drops_the_pdb_it_could_not_honour(dev: list[dict[str, Any]]) -> None:
    assert not [o for o in dev if o["kind"] == "PodDisruptionBudget"]
    group = find(dev, "RayCluster")["spec"]["workerGroupSpecs"][0]
    assert group["minReplicas"] == 1


def test_operator_secrets_are_notes_not_errors(base: list[dict[str, Any]]) -> None:
    report = v.check(base)
    assert report.errors == []
    noted = " ".join(report.notes)
    assert "streamlabel-kafka-credentials" in noted
    assert "streamlabel-kafka-tls" in noted


# --------------------------------------------------------------------------- negative tests


def test_missing_head_group_spec(dev: list[dict[str, Any]]) -> None:
    del find(dev, "RayCluster")["spec"]["headGroupSpec"]
    assert "RayCluster/streamlabel: $.spec: 'headGroupSpec' is a required property" in errors_of(
        dev
    )


def test_missing_worker_template(dev: list[dict[str, Any]]) -> None:
    del find(dev, "RayCluster")["spec"]["workerGroupSpecs"][0]["template"]
    assert "$.spec.workerGroupSpecs[0]: 'template' is a required property" in errors_of(dev)


def test_missing_group_name(dev: list[dict[str, Any]]) -> None:
    del find(dev, "RayCluster")["spec"]["workerGroupSpecs"][0]["groupName"]
    assert "'groupName' is a required property" in errors_of(dev)


def test_missing_container_image(dev: list[dict[str, Any]]) -> None:
    del worker_container(find(dev, "RayCluster"))["image"]
    assert (
        "RayCluster/streamlabel: $.spec.workerGroupSpecs[0].template.spec.containers[0].image: "
        "container has no image" in errors_of(dev)
    )


def test_missing_container_name_in_core_schema(dev: list[dict[str, Any]]) -> None:
    del head_container(find(dev, "RayCluster"))["name"]
    assert "containers[0]: 'name' is a required property" in errors_of(dev)


@pytest.mark.parametrize(
    ("kind", "api_version"),
    [("RayCluster", "ray.io/v1alpha2"), ("PodDisruptionBudget", "policy/v1beta1")],
)
def test_wrong_api_version(mixed: list[dict[str, Any]], kind: str, api_version: str) -> None:
    find(mixed, kind)["apiVersion"] = api_version
    assert f"no schema for apiVersion {api_version} kind {kind}" in errors_of(mixed)


def test_unknown_kind(dev: list[dict[str, Any]]) -> None:
    dev.append({"apiVersion": "v1", "kind": "Podd", "metadata": {"name": "x"}})
    assert "Podd/x: $: no schema for apiVersion v1 kind Podd" in errors_of(dev)


@pytest.mark.parametrize(
    ("kind", "path", "field"),
    [
        ("RayCluster", ("spec", "headGroupSpec"), "rayStartParam"),
        ("RayCluster", ("spec", "workerGroupSpecs", 0), "minReplica"),
        ("RayCluster", ("spec", "autoscalerOptions"), "upscaleMode"),
        ("RayJob", ("spec",), "entryPoint"),
        ("PodDisruptionBudget", ("spec",), "maxUnavailble"),
        ("Kafka", ("spec", "kafka"), "listener"),
        ("KafkaTopic", ("spec",), "partition"),
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0), "portName"),
        ("PodMonitor", ("spec",), "podMetricEndpoints"),
    ],
)
def test_unknown_field_in_strict_schema(
    mixed: list[dict[str, Any]], kind: str, path: tuple[str | int, ...], field: str
) -> None:
    node: Any = find(mixed, kind)
    for key in path:
        node = node[key]
    node[field] = 1
    errors = errors_of(mixed)
    assert f"'{field}' was unexpected" in errors or f"'{field}' were unexpected" in errors, errors


def test_unknown_field_in_pod_template(dev: list[dict[str, Any]]) -> None:
    head_container(find(dev, "RayCluster"))["imagePullPolicyy"] = "Always"
    assert "'imagePullPolicyy' was unexpected" in errors_of(dev)


def test_wrong_type(dev: list[dict[str, Any]]) -> None:
    find(dev, "RayCluster")["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert "$.spec.workerGroupSpecs[0].replicas: 'two' is not of type" in errors_of(dev)


def test_ray_start_params_must_be_strings(dev: list[dict[str, Any]]) -> None:
    find(dev, "RayCluster")["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 1
    assert "rayStartParams['num-cpus']: 1 is not of type" in errors_of(dev)


def test_bad_enum(dev: list[dict[str, Any]]) -> None:
    find(dev, "RayCluster")["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    assert "$.spec.autoscalerOptions.upscalingMode: 'Fast' is not one of" in errors_of(dev)


def test_ray_job_with_cluster_spec_and_selector(dev: list[dict[str, Any]]) -> None:
    job = find(dev, "RayJob")
    job["spec"]["rayClusterSpec"] = copy.deepcopy(find(dev, "RayCluster")["spec"])
    assert (
        "RayJob/streamlabel-run: $.spec: rayClusterSpec and clusterSelector must not both be set"
        in errors_of(dev)
    )


def test_pdb_selector_matching_no_pod(mixed: list[dict[str, Any]]) -> None:
    pdb = find(mixed, "PodDisruptionBudget")
    pdb["spec"]["selector"]["matchLabels"]["ray.io/group"] = "wrokers"
    assert "PodDisruptionBudget/streamlabel-workers: $.spec.selector: selects no pod" in errors_of(
        mixed
    )


def test_pdb_selector_with_expressions(mixed: list[dict[str, Any]]) -> None:
    pdb = find(mixed, "PodDisruptionBudget")
    pdb["spec"]["selector"] = {
        "matchExpressions": [
            {"key": "ray.io/node-type", "operator": "In", "values": ["worker"]},
            {"key": "ray.io/is-ray-node", "operator": "Exists"},
        ]
    }
    assert errors_of(mixed) == ""
    pdb["spec"]["selector"]["matchExpressions"].append(
        {"key": "ray.io/cluster", "operator": "DoesNotExist"}
    )
    assert "selects no pod" in errors_of(mixed)


def test_pod_monitor_port_no_pod_has(dev: list[dict[str, Any]]) -> None:
    find(dev, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] = "sl-drvier"
    assert (
        "PodMonitor/streamlabel: $.spec.podMetricsEndpoints[0].port: "
        "no selected pod has a container port named 'sl-drvier'" in errors_of(dev)
    )


def test_pod_monitor_selecting_no_pod(dev: list[dict[str, Any]]) -> None:
    find(dev, "PodMonitor")["spec"]["selector"]["matchLabels"]["ray.io/cluster"] = "other"
    assert "PodMonitor/streamlabel: $.spec.selector: selects no pod" in errors_of(dev)


def test_kafka_topic_of_a_cluster_not_rendered(dev: list[dict[str, Any]]) -> None:
    find(dev, "KafkaTopic", "sl-items")["metadata"]["labels"]["strimzi.io/cluster"] = "kafka"
    assert (
        "KafkaTopic/sl-items: $.metadata.labels['strimzi.io/cluster']: no rendered Kafka named "
        "'kafka'" in errors_of(dev)
    )


def test_node_pool_without_cluster_label(dev: list[dict[str, Any]]) -> None:
    del find(dev, "KafkaNodePool")["metadata"]["labels"]["strimzi.io/cluster"]
    assert "KafkaNodePool/dual-role: $.metadata.labels: no strimzi.io/cluster label" in errors_of(
        dev
    )


def test_ray_job_cluster_selector_matching_nothing(dev: list[dict[str, Any]]) -> None:
    find(dev, "RayJob")["spec"]["clusterSelector"] = {"ray.io/cluster": "streamlabel-x"}
    assert "$.spec.clusterSelector: matches no rendered RayCluster" in errors_of(dev)


def test_secret_not_rendered_nor_allow_listed(base: list[dict[str, Any]]) -> None:
    env = head_container(find(base, "RayCluster"))["env"]
    ref = next(e for e in env if "valueFrom" in e)["valueFrom"]["secretKeyRef"]
    ref["name"] = "kafka-password"
    assert "Secret 'kafka-password' is not rendered and not operator-provided" in errors_of(base)


def test_config_map_volume_not_rendered(dev: list[dict[str, Any]]) -> None:
    volumes = find(dev, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    cm = next(vol for vol in volumes if "configMap" in vol)
    cm["configMap"]["name"] = "streamlabel-settings"  # without kustomize's hash suffix
    assert "ConfigMap 'streamlabel-settings' is not rendered" in errors_of(dev)


def test_pvc_not_rendered(base: list[dict[str, Any]]) -> None:
    base[:] = [o for o in base if o["kind"] != "PersistentVolumeClaim"]
    assert "PersistentVolumeClaim 'streamlabel-state' is not rendered" in errors_of(base)


def test_service_account_not_rendered(dev: list[dict[str, Any]]) -> None:
    dev[:] = [o for o in dev if o["kind"] != "ServiceAccount"]
    assert "ServiceAccount 'streamlabel' is not rendered" in errors_of(dev)


def test_volume_mount_without_volume(dev: list[dict[str, Any]]) -> None:
    head_container(find(dev, "RayCluster"))["volumeMounts"][0]["name"] = "nope"
    assert "no volume named 'nope' in the pod" in errors_of(dev)


def test_probe_on_a_port_the_container_lacks(dev: list[dict[str, Any]]) -> None:
    worker = worker_container(find(dev, "RayCluster"))
    worker["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "sl-wroker"}}
    assert (
        "containers[0].readinessProbe.httpGet.port: container has no port named 'sl-wroker'"
        in errors_of(dev)
    )


def test_pre_stop_http_on_a_port_the_container_lacks(dev: list[dict[str, Any]]) -> None:
    head_container(find(dev, "RayCluster"))["lifecycle"] = {
        "preStop": {"httpGet": {"path": "/drain", "port": "sl-worker"}}
    }
    assert "lifecycle.preStop.httpGet.port: container has no port named 'sl-worker'" in errors_of(
        dev
    )


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ({}, True),
        ({"matchLabels": {"a": "1"}}, True),
        ({"matchLabels": {"a": "2"}}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, False),
        ({"matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["1"]}]}, True),
        ({"matchExpressions": [{"key": "b", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "c", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, False),
        (None, False),
    ],
)
def test_selector_matches(selector: Any, matches: bool) -> None:
    assert v.selector_matches(selector, {"a": "1", "b": "x"}) is matches


# --------------------------------------------------------------------------- the CLI


def test_cli_ok(kubectl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert v.main(["--kubectl", str(kubectl), str(FIXTURES / "valid")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["OK tests/unit/k8s/fixtures/valid: 6 objects"]


def test_cli_reports_every_error(kubectl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert v.main(["--kubectl", str(kubectl), str(FIXTURES / "broken")]) == 1
    out = capsys.readouterr().out
    label = "tests/unit/k8s/fixtures/broken"
    assert (
        f"{label} PodDisruptionBudget/old-api: $: no schema for apiVersion policy/v1beta1 "
        "kind PodDisruptionBudget" in out
    )
    assert (
        f"{label} Deployment/typo: $.spec.template.spec.containers[0]: Additional properties are "
        "not allowed ('imagePullPolicyy' was unexpected)" in out
    )
    assert f"{label} Service/nobody: $.spec.selector: selects no pod" in out
    assert "OK" not in out


def test_cli_without_kubectl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert v.main(["--kubectl", str(tmp_path / "kubectl"), str(FIXTURES / "valid")]) == 1
    assert "scripts/install-kubectl.sh" in capsys.readouterr().out
