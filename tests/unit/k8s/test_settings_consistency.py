"""The rendered settings file agrees with the manifests that carry it.

The settings (a TOML file in a ConfigMap) and the RayCluster are written
separately; these tests render each overlay and check that what the driver
will read matches what Kubernetes and KubeRay will provide: valid settings,
worker counts equal to the group's replicas, Ray CPUs that give one stream
worker per pod, the learner pinned to the head, ports and mount paths.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from streamlabel.ops.endpoint import ROLE_OFFSETS
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "k8s"))
import validate as v  # noqa: E402

OVERLAYS = ["base", "overlays/dev", "overlays/gpu"]


@pytest.fixture(scope="module")
def kubectl() -> Path:
    try:
        return v.find_kubectl()
    except v.RenderError as exc:
        pytest.fail(f"{exc}; CI runs scripts/install-kubectl.sh before the tests")


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, kubectl: Path) -> tuple[str, list[dict[str, Any]]]:
    return request.param, v.render(ROOT / "k8s" / request.param, kubectl)


def _one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def _settings(objs: list[dict[str, Any]], tmp_path: Path) -> RuntimeSettings:
    maps = [
        o for o in objs
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("streamlabel-settings")
    ]  # fmt: skip
    assert len(maps) == 1
    path = tmp_path / "streamlabel.toml"
    path.write_text(maps[0]["data"]["streamlabel.toml"])
    raw = tomllib.loads(path.read_text())
    secrets: dict[str, Any] = {}
    if raw["kafka"].get("security_protocol", "").startswith("SASL"):  # from the Secret, as env
        secrets = {"kafka": {"sasl_username": "u", "sasl_password": "p"}}
    return load_runtime_settings(path, **secrets)


def _containers(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(group, group spec, container)`` for the head and each worker group."""
    spec = cluster["spec"]
    out = [("headgroup", spec["headGroupSpec"], spec["headGroupSpec"]["template"]["spec"])]
    out += [(g["groupName"], g, g["template"]["spec"]) for g in spec["workerGroupSpecs"]]
    return [(name, g, pod["containers"][0]) for name, g, pod in out]


def test_the_settings_file_is_valid(overlay, tmp_path) -> None:
    _, objs = overlay
    s = _settings(objs, tmp_path)
    assert s.metrics.host == "0.0.0.0", "Prometheus and the kubelet could not reach the endpoints"
    assert s.ray.address == "auto"
    assert s.learner.state_dir


def test_worker_counts_match_the_worker_groups(overlay, tmp_path) -> None:
    name, objs = overlay
    s = _settings(objs, tmp_path)
    cluster = _one(objs, "RayCluster")
    groups = cluster["spec"]["workerGroupSpecs"]
    per_pod = {
        g["groupName"]: int(
            (float(g["rayStartParams"]["num-cpus"]) - (s.ray.embedder_num_cpus
             if g["rayStartParams"].get("num-gpus") else 0)) // s.ray.worker_num_cpus
        )
        for g in groups
    }  # fmt: skip
    assert all(n >= 1 for n in per_pod.values()), per_pod
    capacity = sum(per_pod[g["groupName"]] * g["maxReplicas"] for g in groups)
    assert s.scaling.max_workers is not None
    assert s.scaling.max_workers <= capacity, (name, per_pod)
    start = sum(per_pod[g["groupName"]] * g["replicas"] for g in groups)
    assert s.supervisor.workers <= start, "workers at start need pods that exist at start"
    floor = sum(per_pod[g["groupName"]] * g["minReplicas"] for g in groups)
    assert s.scaling.min_workers <= floor
    assert s.scaling.max_workers <= s.kafka.partitions, "a worker beyond the partitions idles"
    plain = next(g for g in groups if g["groupName"] == "workers")
    assert per_pod["workers"] == 1, "one stream worker per `workers` pod (its port and drain)"
    if name != "overlays/gpu":
        assert (s.supervisor.workers, s.scaling.min_workers, s.scaling.max_workers) == (
            plain["replicas"], plain["minReplicas"], plain["maxReplicas"],
        )  # fmt: skip


def test_the_learner_fits_only_on_the_head(overlay, tmp_path) -> None:
    _, objs = overlay
    s = _settings(objs, tmp_path)
    cluster = _one(objs, "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    assert float(head["num-cpus"]) >= s.ray.learner_num_cpus
    assert float(head["num-cpus"]) < s.ray.worker_num_cpus, "a stream worker would fit the head"
    assert s.ray.learner_resources, "the learner must be pinned to the head (its state volume)"
    # KubeRay hands the value to `ray start --resources=<value>` through a shell
    offered = json.loads(head["resources"].strip().strip('"').replace('\\"', '"'))
    for key, amount in s.ray.learner_resources.items():
        assert offered.get(key, 0) >= amount
    for g in cluster["spec"]["workerGroupSpecs"]:
        assert "resources" not in g["rayStartParams"], f"{g['groupName']} offers a learner slot"
    mounts = {m["mountPath"] for m in _containers(cluster)[0][2]["volumeMounts"]}
    assert s.learner.state_dir in mounts


def test_endpoint_ports_and_paths_match_the_containers(overlay, tmp_path) -> None:
    _, objs = overlay
    s = _settings(objs, tmp_path)
    for group, _, container in _containers(_one(objs, "RayCluster")):
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/etc/streamlabel" in mounts, group
        if s.kafka.ssl_cafile:
            assert str(Path(s.kafka.ssl_cafile).parent) in mounts, group
        if group == "headgroup":
            assert ports["sl-driver"] == s.metrics.port + ROLE_OFFSETS["driver"]
            assert ports["sl-learner"] == s.metrics.port + ROLE_OFFSETS["learner"]
            drain = container["lifecycle"]["preStop"]["exec"]["command"]
            assert drain[:4] == ["streamlabel", "drain", "--port", str(ports["sl-driver"])]
        else:
            assert ports["sl-worker"] == s.metrics.port + ROLE_OFFSETS["worker"]
            drain = container["lifecycle"]["preStop"]["exec"]["command"]
            assert drain[:4] == ["streamlabel", "drain", "--port", str(ports["sl-worker"])]
        timeout = float(drain[drain.index("--timeout") + 1])
        grace = (
            _one(objs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
            if group == "headgroup"
            else next(
                g for g in _one(objs, "RayCluster")["spec"]["workerGroupSpecs"]
                if g["groupName"] == group
            )["template"]["spec"]
        )["terminationGracePeriodSeconds"]  # fmt: skip
        assert grace > timeout, f"{group}: the kubelet would kill the drain"
        assert timeout >= s.supervisor.stop_timeout_s or group != "headgroup"


def test_the_rayjob_runs_the_mounted_settings(overlay) -> None:
    _, objs = overlay
    job = _one(objs, "RayJob")
    entry = job["spec"]["entrypoint"].split()
    assert entry[:2] == ["streamlabel", "run"]
    assert entry[entry.index("--config") + 1] == "/etc/streamlabel/streamlabel.toml"
    assert (
        job["spec"]["clusterSelector"]["ray.io/cluster"]
        == _one(objs, "RayCluster")["metadata"]["name"]
    )
