"""The ``streamlabel`` command line: the parser and dispatch in
:mod:`~streamlabel.cli.main`, one module per command group (``bench``,
``chaos``, ``demo``, the runtime's commands) and the generated reference pages.
"""

from streamlabel.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
