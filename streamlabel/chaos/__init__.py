"""Fault injection against a real deployment: ``streamlabel chaos``.

:func:`run_chaos` starts one deployment (embedded tansu, local Ray, the real
model), runs the chosen scenarios on it in a fixed order, and reports, per
scenario, the inputs produced and how many were lost, duplicated or
unexpected (see :mod:`streamlabel.chaos.ledger`).
"""

from streamlabel.chaos.runner import ORDER, run_chaos

__all__ = ["ORDER", "run_chaos"]
