"""Operating a deployment: the metrics and health endpoint every actor serves.

* :mod:`~streamlabel.ops.endpoint` — ``/metrics``, ``/healthz``, ``/readyz``,
  ``POST /drain`` (prometheus-client's handler);
* :mod:`~streamlabel.ops.metrics` — the metric families of each role.
"""
