"""Executed notebooks as self-contained HTML pages, for the report to link.

nbconvert's "lab" and "classic" templates load MathJax, require.js and mermaid from a
CDN; the "basic" template emits the cells alone, with no script and no network link.
Each page wraps that body in a minimal page with the report's inline CSS, so it works
offline (math stays as its LaTeX source).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sde_utils.pipeline.render import esc
from sde_utils.pipeline.style import CSS

NOTEBOOK_CSS = (
    CSS
    + """
main { max-width: 1100px; }
.jp-Cell { margin: 10px 0; }
.jp-InputArea pre, .jp-OutputArea pre { background: #f6f8fa; border: 1px solid var(--line);
  padding: 8px; overflow-x: auto; font-size: 12.5px; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
"""
)

NOTEBOOK_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body><main><p class="sub"><a href="../index.html">← report</a></p>
{body}</main></body></html>
"""


def export_notebooks(executed_dir: Path, *, force: bool = False) -> dict[str, dict[str, Any]]:
    """Export every ``*.ipynb`` of ``executed_dir`` to a self-contained HTML page beside it.

    The page loads nothing from the network (math stays as its LaTeX source).

    Returns ``{stem: {"ipynb": Path, "html": Path | None, "note": str | None}}``. An HTML
    file newer than its notebook is reused unless ``force``; a notebook nbconvert cannot
    convert gets ``html=None`` and a note saying why (the report links the ``.ipynb``).
    """
    executed_dir = Path(executed_dir)
    out: dict[str, dict[str, Any]] = {}
    notebooks = sorted(executed_dir.glob("*.ipynb")) if executed_dir.is_dir() else []
    exporter = None
    for nb in notebooks:
        target = nb.with_suffix(".html")
        entry: dict[str, Any] = {"ipynb": nb, "html": None, "note": None}
        out[nb.stem] = entry
        if not force and target.is_file() and target.stat().st_mtime >= nb.stat().st_mtime:
            entry["html"] = target
            continue
        try:
            if exporter is None:
                from nbconvert import HTMLExporter

                # "basic" emits the cells alone, with no script and no CDN link; the page
                # around them is ours, with inline CSS, so the export works offline
                exporter = HTMLExporter(template_name="basic")
            body, _ = exporter.from_filename(str(nb))
            body = NOTEBOOK_PAGE.format(title=esc(nb.stem), css=NOTEBOOK_CSS, body=body)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, target)
            entry["html"] = target
        except Exception as exc:  # nbconvert raises many kinds; the report must go on
            entry["note"] = f"not converted to HTML ({type(exc).__name__}: {exc})"[:300]
    return out


__all__ = ["export_notebooks", "NOTEBOOK_CSS", "NOTEBOOK_PAGE"]
