"""What ships with the console: its Jinja2 templates, its static files, and the
vendored front-end libraries (htmx, uPlot) pinned in ``static/vendor/MANIFEST.tsv``.

Nothing is fetched at run time: the libraries were installed from the npm
registry at build time (``make ui-assets``) and are part of the package; the
manifest names each file's package, version and sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = ["VendorFile", "static_dir", "static_text", "templates", "vendor_manifest"]


@dataclass(frozen=True)
class VendorFile:
    """One vendored file: its name, the npm package@version and path it came from, its sha256."""

    name: str
    package: str
    path: str
    sha256: str

    def actual_sha256(self) -> str:
        return hashlib.sha256((static_dir() / "vendor" / self.name).read_bytes()).hexdigest()


def static_dir() -> Path:
    """The folder of the console's static files (inside the installed package)."""
    return Path(str(resources.files("streamlabel.ui") / "static"))


def static_text(relative: str) -> str:
    """A static file's text (``app.css``, ``vendor/uPlot.iife.min.js``...), for inlining."""
    return (static_dir() / relative).read_text(encoding="utf-8")


def vendor_manifest() -> list[VendorFile]:
    """The vendored files as ``static/vendor/MANIFEST.tsv`` lists them."""
    rows = static_text("vendor/MANIFEST.tsv").splitlines()
    return [VendorFile(*line.split("\t")) for line in rows if line and not line.startswith("#")]


@cache
def templates() -> Environment:
    """The console's templates (HTML autoescaped; an undefined name is an error)."""
    env = Environment(
        loader=PackageLoader("streamlabel.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    env.filters["score"] = lambda v: "" if v is None else f"{v:.3f}"
    return env
