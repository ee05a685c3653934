"""HTML for recorded numbers: escaping, number formatting, any JSON value as a table.

Used by :mod:`sde_utils.pipeline.report`. Numbers are shown to four significant digits
(``0.30000000000000004`` reads ``0.3``), large and tiny ones in scientific notation;
long lists are cut after ``MAX_LIST_ITEMS`` values.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

MAX_LIST_ITEMS = 12
MAX_DEPTH = 4


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def href(path: Path, root: Path) -> str:
    """A relative, URL-quoted link from ``root`` (the folder of index.html) to ``path``."""
    return quote(Path(os.path.relpath(path, root)).as_posix())


def read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path.name} could not be read ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, None


def format_scalar(value: Any) -> tuple[str, str]:
    """(text, css class) of a scalar cell."""
    if value is None:
        return "–", ""
    if isinstance(value, bool):
        return ("yes", "yes") if value else ("no", "no")
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value), "num"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value), "num"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}", "num"
        return f"{value:.4g}", "num"
    return str(value), ""


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _cell(value: Any, depth: int) -> str:
    if is_scalar(value):
        text, cls = format_scalar(value)
        return f'<td class="{cls}">{esc(text)}</td>' if cls else f"<td>{esc(text)}</td>"
    return f"<td>{render_value(value, depth + 1)}</td>"


def _verdict_first(keys: Sequence[str]) -> list[str]:
    return sorted(keys, key=lambda k: 0 if "verdict" in k.lower() else 1)


def render_value(value: Any, depth: int = 0) -> str:
    """HTML for any JSON value: scalars as text, lists compactly, dicts as tables.

    A dict whose values are all flat dicts becomes one table (rows = keys, columns = the
    union of inner keys); other dicts become key/value tables, nested up to
    ``MAX_DEPTH`` levels (deeper values are shown as JSON). Lists of scalars are joined,
    the first ``MAX_LIST_ITEMS`` shown; lists of flat dicts become tables.
    """
    if is_scalar(value):
        return esc(format_scalar(value)[0])
    if depth >= MAX_DEPTH:
        return f"<pre>{esc(json.dumps(value, indent=1)[:2000])}</pre>"
    if isinstance(value, list):
        if not value:
            return '<span class="note">empty</span>'
        if all(is_scalar(v) for v in value):
            shown = ", ".join(format_scalar(v)[0] for v in value[:MAX_LIST_ITEMS])
            more = len(value) - MAX_LIST_ITEMS
            return esc(f"[{shown}{f', … ({more} more)' if more > 0 else ''}]")
        if all(isinstance(v, Mapping) and all(is_scalar(x) for x in v.values()) for v in value):
            return matrix({str(i): v for i, v in enumerate(value)}, depth, corner="#")
        items = "".join(f"<li>{render_value(v, depth + 1)}</li>" for v in value[:MAX_LIST_ITEMS])
        return f"<ol start=0>{items}</ol>"
    if isinstance(value, Mapping):
        if not value:
            return '<span class="note">empty</span>'
        inner = list(value.values())
        if all(isinstance(v, Mapping) and v for v in inner) and all(
            is_scalar(x) for v in inner for x in v.values()
        ):
            return matrix(value, depth)
        rows = "".join(
            f"<tr><th>{esc(k)}</th>{_cell(value[k], depth)}</tr>"
            for k in _verdict_first(list(value))
        )
        return f"<table>{rows}</table>"
    return esc(repr(value))


def matrix(rows: Mapping[str, Mapping[str, Any]], depth: int, corner: str = "") -> str:
    columns: list[str] = []
    for inner in rows.values():
        columns += [c for c in inner if c not in columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{esc(name)}</th>" + "".join(_cell(inner.get(c), depth) for c in columns) + "</tr>"
        for name, inner in rows.items()
    )
    return f"<table><tr><th>{esc(corner)}</th>{head}</tr>{body}</table>"


__all__ = ["esc", "href", "read_json", "format_scalar", "is_scalar", "render_value", "matrix"]
