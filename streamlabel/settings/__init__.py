"""Settings: one model per deployment, one section per component, one loader.

* :mod:`~streamlabel.settings.engine` — the Engine's sections (model, store,
  discovery, drift, limits) and :func:`load_settings`;
* :mod:`~streamlabel.settings.kafka`, :mod:`~streamlabel.settings.workers`
  (worker, learner) and :mod:`~streamlabel.settings.deployment` (supervisor,
  scaling, logging, ray, metrics) — the deployment's sections;
* :mod:`~streamlabel.settings.runtime` — all of them in one model, and
  :func:`load_runtime_settings`;
* :mod:`~streamlabel.settings.loader` — how every model is read;
  :mod:`~streamlabel.settings.renamed` — old names still read for one release.

Every default of the learning parts lives once, in the core's config classes;
the settings validate and name them. Sources, highest priority first:
explicit overrides, ``STREAMLABEL_<SECTION>__<NAME>`` environment variables,
a settings file (TOML or JSON).
"""

from streamlabel.settings.engine import EngineSettings, load_settings
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings

__all__ = ["EngineSettings", "RuntimeSettings", "load_runtime_settings", "load_settings"]
