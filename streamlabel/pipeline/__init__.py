"""The Engine (batch in -> records out), its settings and its input/output types."""

from streamlabel.pipeline.engine import Engine
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.pipeline.settings import EngineSettings, load_settings

__all__ = ["Engine", "EngineOutput", "EngineSettings", "Observed", "RawRecord", "load_settings"]
