"""The Engine (batch in -> records out), its settings and its input/output types.

Names are imported on first use, so reading settings does not load the
Engine's numeric stack (scikit-learn, FAISS).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamlabel.pipeline.engine import Engine
    from streamlabel.pipeline.inputs import RawRecord
    from streamlabel.pipeline.output import EngineOutput, Observed
    from streamlabel.settings.engine import EngineSettings, load_settings

_LAZY = {
    "Engine": "streamlabel.pipeline.engine",
    "RawRecord": "streamlabel.pipeline.inputs",
    "EngineOutput": "streamlabel.pipeline.output",
    "Observed": "streamlabel.pipeline.output",
    "EngineSettings": "streamlabel.settings.engine",
    "load_settings": "streamlabel.settings.engine",
}

__all__ = ["Engine", "EngineOutput", "EngineSettings", "Observed", "RawRecord", "load_settings"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
