"""The live web console (``streamlabel run --ui``) and its one-file report
(``streamlabel report``): docs/console.md.

* :mod:`~streamlabel.ui.views` — what the console shows, in bounded memory
  (:mod:`~streamlabel.ui.windows`, :mod:`~streamlabel.ui.incidents`,
  :mod:`~streamlabel.ui.projection`);
* :mod:`~streamlabel.ui.feed` — the topics' reader that fills the views;
* :mod:`~streamlabel.ui.app` — the Starlette app (:mod:`~streamlabel.ui.pages`,
  :mod:`~streamlabel.ui.actions`, :mod:`~streamlabel.ui.events`,
  :mod:`~streamlabel.ui.auth`) over a :class:`~streamlabel.ui.console.Console`;
* :mod:`~streamlabel.ui.server` — serving it from a running process;
* :mod:`~streamlabel.ui.report` — the self-contained HTML report.

The web stack (Starlette, uvicorn, Jinja2) comes with the ``worker`` extra; the
modules that need it import it, so ``import streamlabel.ui`` needs only numpy.
"""

from streamlabel.ui.feed import FEED_TOPICS, ConsoleFeed
from streamlabel.ui.views import ConsoleViews

__all__ = ["FEED_TOPICS", "ConsoleFeed", "ConsoleViews"]
