"""Sphinx configuration of the tornado-session user guide.

Pages are Markdown (MyST), the API reference is generated from the docstrings
(autodoc).  CI builds with warnings as errors (``scripts/docs.sh``).
"""

from __future__ import annotations

import fnmatch
import importlib
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

project = "tornado-session"
author = "the tornado-session authors"
copyright = "2026, the tornado-session authors"
release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "requirements.txt"]
#: Toctree globs of pages that a build may not have yet (the optional stores'
#: pages): a glob that matches no page is dropped rather than warned about.
OPTIONAL_PAGES = ("stores-*", "custom-store*")

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Docstrings use Tornado's convention: `name` is a cross-reference.
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}

html_theme = "furo"
html_title = "tornado-session"

#: Stores whose driver is optional: documented when their module imports.
OPTIONAL_STORES = {
    "MongoStore": "tornado_session.stores.mongo",
    "RedisStore": "tornado_session.stores.redis",
    "EncryptedStore": "tornado_session.stores.encrypted",
}


def _optional_stores() -> str:
    """The autodoc directives of the optional stores that are present."""
    blocks = []
    for name, module in OPTIONAL_STORES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        blocks.append(f".. autoclass:: {module}.{name}\n   :members:\n")
    return "\n".join(blocks) or "(No optional store is installed in this build.)\n"


def _pages() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(page.stem for suffix in (".md", ".rst") for page in here.glob("*" + suffix))


def _fill_toctree(text: str) -> str:
    """Drop the optional globs that match no page; list pages no toctree names.

    Pages that other work adds to docs/ then appear in the guide without a
    "document isn't included in any toctree" warning failing the build.
    """
    pages = _pages()
    for pattern in OPTIONAL_PAGES:
        if not fnmatch.filter(pages, pattern):
            text = text.replace(f"\n{pattern}\n", "\n")
    named = {line.strip() for line in text.splitlines()} | {"index"}
    others = [
        page for page in pages
        if page not in named and not any(fnmatch.fnmatch(page, p) for p in OPTIONAL_PAGES)
    ]
    return text.replace("\n{other-pages}\n", "\n" + "".join(f"{page}\n" for page in others))


def _fill_placeholders(app: Any, docname: str, source: list[str]) -> None:
    if docname == "api":
        source[0] = source[0].replace(".. optional-stores-here\n", _optional_stores())
    elif docname == "index":
        source[0] = _fill_toctree(source[0])


def setup(app: Any) -> None:
    """Register the hook that fills in the optional stores and pages present."""
    app.connect("source-read", _fill_placeholders)
