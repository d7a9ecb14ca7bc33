"""Operating a deployment: the metrics and health endpoint every actor serves.

* :mod:`~streamlabel.ops.endpoint` — ``/metrics``, ``/healthz``, ``/readyz``,
  ``POST /drain`` (prometheus-client's handler);
* :mod:`~streamlabel.ops.client` — ``streamlabel healthcheck`` and ``drain``;
* :mod:`~streamlabel.ops.drain_token` — who may ``POST /drain``;
* :mod:`~streamlabel.ops.metrics` — the metric families of each role.
"""
