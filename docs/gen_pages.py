"""Pages mkdocs builds from the repository (run by the mkdocs-gen-files plugin).

* ``index.md``: the README (its ``docs/`` links made site-relative);
* ``changelog.md``: CHANGELOG.md;
* ``reference/settings.md`` and ``reference/cli.md``: generated from the
  settings model and the command line parser (:mod:`streamlabel.cli.reference`).
"""

from __future__ import annotations

import re
from pathlib import Path

import mkdocs_gen_files

from streamlabel.cli.reference import cli_markdown, settings_markdown

ROOT = Path(__file__).resolve().parent.parent


def _site_links(markdown: str) -> str:
    markdown = markdown.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
    # LICENSE and NOTICE are files of the repository, not pages: keep the text only
    return re.sub(r"\[([^\]]+)\]\((LICENSE|NOTICE)\)", r"\1", markdown)


with mkdocs_gen_files.open("index.md", "w") as f:
    f.write(_site_links((ROOT / "README.md").read_text()))
with mkdocs_gen_files.open("changelog.md", "w") as f:
    f.write((ROOT / "CHANGELOG.md").read_text())
with mkdocs_gen_files.open("reference/settings.md", "w") as f:
    f.write(settings_markdown())
with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(cli_markdown())
