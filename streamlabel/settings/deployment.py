"""The deployment's settings: the supervisor (``supervisor.*``), autoscaling
(``scaling.*``), logging (``logging.*``), Ray (``ray.*``) and the endpoints
(``metrics.*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from streamlabel.core.autoscale import AutoscalePolicy
from streamlabel.settings.loader import Section

__all__ = [
    "LoggingSettings",
    "MetricsSettings",
    "RaySettings",
    "ScalingSettings",
    "SupervisorSettings",
]


class SupervisorSettings(Section):
    """The supervisor: how many stream workers, where the model runs, restarts and stops."""

    workers: int = Field(default=2, ge=1, le=1024, description="Stream workers (one group).")
    embedder: Literal["auto", "local", "actor"] = Field(
        default="auto",
        description="local: each worker loads the model; actor: one shared embedder actor "
        "(owns the GPU); auto: actor when the Ray cluster has a GPU, local otherwise.",
    )
    max_restarts: int = Field(
        default=5,
        ge=0,
        description="Restarts of one actor within supervisor.restart_window_s; one more "
        "failure and its slot is exhausted (reported, tried again a window later) while the "
        "rest of the deployment keeps running.",
    )
    restart_window_s: float = Field(
        default=600.0,
        gt=0,
        description="The sliding window of supervisor.max_restarts: an actor that stayed up "
        "this long has its whole budget (and an immediate first restart) back.",
    )
    restart_backoff_s: float = Field(
        default=5.0,
        ge=0,
        description="The first restart within a window is immediate; the next waits this "
        "long, doubling with each further one up to supervisor.restart_backoff_max_s.",
    )
    restart_backoff_max_s: float = Field(
        default=120.0, ge=0, description="The longest wait between two restarts of one actor."
    )
    liveness_check_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the supervisor asks each running actor whether its loop "
        "still steps; one that made no step (or did not answer) for metrics.stall_s is "
        "killed and restarted.",
    )
    learner_start_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="A restarted learner that is not ready after this long is given up "
        "and started again (the other actors are supervised meanwhile).",
    )
    broker_check_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the supervisor checks that the topics were not recreated "
        "(a broker that lost its data).",
    )
    stop_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Graceful stop: the workers' deadline (the learner "
        "gets half of it again for its last snapshot).",
    )
    worker_start_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="A worker that is not ready after this long (no node has room, the "
        "model does not load) is given up and started again.",
    )
    drained_node_wait_s: float = Field(
        default=90.0,
        ge=0,
        description="After a drain, how long a worker waits for the node it left to go "
        "away before it is started again anyway (a pod's termination grace period).",
    )

    @model_validator(mode="after")
    def _backoff_bounded(self) -> SupervisorSettings:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError(
                f"supervisor.restart_backoff_max_s ({self.restart_backoff_max_s:g}) is below "
                f"supervisor.restart_backoff_s ({self.restart_backoff_s:g})"
            )
        return self


class ScalingSettings(Section):
    """Lag-driven autoscaling of the stream workers (see :class:`AutoscalePolicy`)."""

    enabled: bool = Field(
        default=False,
        description="Scale the number of stream workers on consumer lag between "
        "scaling.min_workers and scaling.max_workers (on Kubernetes, KubeRay's autoscaler "
        "then adds or removes the pods the actors need).",
    )
    min_workers: int = Field(default=1, ge=1, le=1024, description="The autoscaler's lower bound.")
    max_workers: int | None = Field(
        default=None, ge=1, le=1024, description="None = the items topic's partitions."
    )
    target_lag_per_worker: int = Field(
        default=5000, ge=1, description="Records of lag one worker is expected to absorb."
    )
    scale_up_after_s: float = Field(
        default=AutoscalePolicy.up_after_s,
        ge=0,
        description="Lag above target this long before adding workers.",
    )
    scale_down_after_s: float = Field(
        default=AutoscalePolicy.down_after_s,
        ge=0,
        description="Lag below target this long before removing one.",
    )
    scale_cooldown_s: float = Field(
        default=AutoscalePolicy.cooldown_s, ge=0, description="Pause after each change."
    )

    def to_policy(self, partitions: int) -> AutoscalePolicy:
        """The core's policy; ``max_workers`` unset means ``partitions`` (a worker
        without a partition would only wait), and ``min_workers`` is at most that."""
        top = self.max_workers if self.max_workers is not None else partitions
        return AutoscalePolicy(
            min_workers=min(self.min_workers, top),
            max_workers=top,
            target_lag_per_worker=self.target_lag_per_worker,
            up_after_s=self.scale_up_after_s,
            down_after_s=self.scale_down_after_s,
            cooldown_s=self.scale_cooldown_s,
        )


class LoggingSettings(Section):
    """The logs of the driver and of every actor."""

    json_lines: bool = Field(default=False, description="Log JSON lines instead of text.")
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The lowest level logged."
    )
    libraries: Literal["debug", "info", "warning", "error"] = Field(
        default="warning",
        description="The lowest level logged by libraries (kafka-python, Ray, transformers, "
        "urllib3, ...); streamlabel's own lines and Python warnings follow logging.level.",
    )


class RaySettings(Section):
    """Where the actors run."""

    address: str | None = Field(
        default=None, description="Ray cluster address; None = RAY_ADDRESS or a local Ray."
    )
    include_dashboard: bool = Field(
        default=False, description="Start a local Ray's dashboard (on 127.0.0.1)."
    )
    num_cpus: int | None = Field(default=None, ge=1, description="Local Ray's CPUs.")
    worker_num_cpus: float = Field(default=0.5, ge=0.0, description="Ray CPUs per stream worker.")
    learner_num_cpus: float = Field(default=0.25, ge=0.0, description="Ray CPUs of the learner.")
    embedder_num_gpus: float = Field(default=1.0, ge=0.0, description="GPUs of the embedder actor.")
    embedder_num_cpus: float = Field(
        default=1.0, ge=0.0, description="Ray CPUs the embedder actor holds (tokenization)."
    )
    learner_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources the learner asks for; pins it to the nodes that "
        "offer them (on Kubernetes the head, where its state volume is, through the head's "
        "rayStartParams resources).",
    )
    worker_resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each stream worker asks for."
    )


class MetricsSettings(Section):
    """The Prometheus and health endpoint of every actor and of the driver."""

    enabled: bool = Field(default=True, description="Serve /metrics, /healthz, /readyz, /drain.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Bind address; 0.0.0.0 in a pod so Prometheus and the kubelet reach it.",
    )
    port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Base port: the driver takes it, the learner port+1, stream workers "
        "port+2 (each the first free port from there); 0 = any free port.",
    )
    port_span: int = Field(default=32, ge=1, le=1024, description="Ports tried from the base.")
    stall_s: float = Field(
        default=120.0,
        gt=0,
        description="/healthz fails when the actor's loop made no step for this long.",
    )
