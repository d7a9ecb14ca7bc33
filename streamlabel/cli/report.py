"""``streamlabel report``: the console's Classes, Map, Unknowns and Drift sections of a
running (or stopped) deployment as one self-contained HTML file.

It reads the deployment's output topics once, to their current ends, through the
console's own views and templates (:mod:`streamlabel.ui.report`); the file
inlines its styles and scripts and makes no request when opened.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from streamlabel.cli.runtime import settings_from_args
from streamlabel.errors import SettingsError
from streamlabel.ui.feed import ConsoleFeed
from streamlabel.ui.report import render_report

__all__ = ["cmd_report"]


def cmd_report(args: Any) -> int:
    """Writes ``args.out``; prints its path and size to stderr."""
    settings = settings_from_args(args)
    kafka = settings.kafka
    if kafka.bootstrap_servers is None:
        raise SettingsError(
            "kafka.bootstrap_servers is not set: pass --bootstrap-servers or "
            "STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS"
        )
    views = ConsoleFeed(kafka).read_to_end()
    html = render_report(views, source=f"{kafka.bootstrap_servers} · {kafka.topic_prefix}*")
    out = Path(args.out)
    out.write_text(html, encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0
