"""Settings: one model per component, validated once at start-up.

* :mod:`~streamlabel.settings.engine` — the Engine's sections (model, store,
  discovery, drift, limits) and :func:`load_settings`;
* :mod:`~streamlabel.settings.runtime` — the deployment's sections (kafka, ray,
  runtime, metrics) on top, and :func:`load_runtime_settings`.

Every default of the learning parts lives once, in the core's config classes;
the settings validate and name them. Sources, highest priority first:
explicit overrides, ``STREAMLABEL_<SECTION>__<NAME>`` environment variables,
a settings file (TOML or JSON).
"""

from streamlabel.settings.engine import EngineSettings, load_settings
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings

__all__ = ["EngineSettings", "RuntimeSettings", "load_runtime_settings", "load_settings"]
