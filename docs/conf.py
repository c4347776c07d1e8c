"""Sphinx configuration: the Markdown guides in this folder plus an API page from docstrings.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pygments.lexers.shell import BashLexer
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document the source tree, installed or not

import flask_alipay  # noqa: E402

project = "Flask-Alipay-Login"
author = "The flask_alipay developers"
copyright = "2026, The flask_alipay developers"
release = version = flask_alipay.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# The guides link to headings GitHub-style (#one-user-id-the-whole-profile).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"Flask-Alipay-Login {release}"


class OutsideLinks(SphinxTransform):
    """Give the guides' links to files outside docs/ a target in the built site.

    GitHub follows ``../README.md`` and ``../benchmarks/README.md`` as written; Sphinx only
    knows documents under docs/.  The top-level README is included as the ``project``
    page, so links to it go there (anchors kept).  Any other file of the repository
    becomes a download, as MyST already does for non-Markdown files, so the link works
    in the built HTML as well.  The included README's own links (``README.zh-CN.md``) are
    read from the top of the repository, where the README is.
    """

    default_priority = 850  # before DoctreeReadEvent (880), where downloads are collected

    def apply(self, **kwargs: Any) -> None:
        here = (Path(self.env.srcdir) / self.env.docname).parent
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node["reftarget"] in self.env.found_docs:
                continue
            if node.get("refdomain") == "doc":  # a .md path MyST took for a document
                path = (Path(self.env.srcdir) / (node["reftarget"] + ".md")).resolve()
            elif self.env.docname == "project":  # the README's own links: from the top
                path = (ROOT / node["reftarget"].partition("#")[0]).resolve()
            else:
                continue
            if path == ROOT / "README.md":
                node["refdomain"], node["reftarget"] = "doc", "project"
                node.setdefault("reftargetid", None)
            elif path.is_file() and ROOT in path.parents:
                download = addnodes.download_reference(
                    refdomain=None,
                    reftarget=os.path.relpath(path, here),
                    refdoc=self.env.docname,
                    reftype="myst",
                    refexplicit=node.get("refexplicit", True),
                )
                download.extend(node.children)
                node.replace_self(download)


def setup(app: Sphinx) -> None:
    app.add_transform(OutsideLinks)
    # ```dotenv blocks are KEY=value lines; Pygments has no lexer by that name.
    app.add_lexer("dotenv", BashLexer)
