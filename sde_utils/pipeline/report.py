"""The browsable report: ``reports/index.html``, one static page over everything a run wrote.

    python -m sde_utils.pipeline.report [REPORTS_DIR]

The page is self-contained: inline CSS, no script, no network, every link relative to
``reports/`` so the folder can be moved or committed and browsed as files. It shows, for
whatever subset of notebooks has run:

- the run summary (profile, commit, time and status per notebook) with links to each
  executed notebook, exported to HTML beside it (``reports/notebooks/NN-name.html``, with
  nbconvert's Python API; a notebook that cannot be converted is linked as ``.ipynb`` with
  a note);
- the paper's figures 1–7 with the paper's caption and what ours shows (the finding that
  notebook 07 recorded in ``reports/metrics/07-paper-figures.json``), then every other
  figure in ``reports/figures/`` grouped by the notebook that made it;
- notebook 03's held-out evaluation as a table (model x metric);
- every notebook's recorded numbers (``reports/metrics/*.json``), rendered generically:
  scalars as key/value rows, a dict of flat dicts as a table, nested entries as nested
  tables; entries whose name mentions a verdict come first. The parameters sit in a
  collapsed block.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sde_utils import paths
from sde_utils.analysis.paper_figures import PAPER_FIGURES

__all__ = ["build_report", "try_build_report", "export_notebooks", "render_value", "main"]

FIGURES_NOTEBOOK = "07-paper-figures"
EVALUATION_NOTEBOOK = "03-train-sde"
MAX_LIST_ITEMS = 12
MAX_DEPTH = 4

CSS = """
:root { --blue: #0173b2; --red: #d55e00; --grey: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0; background: #fafafa; }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 40px 0 12px; padding-bottom: 4px; border-bottom: 2px solid #222; }
h3 { font-size: 17px; margin: 26px 0 8px; }
.sub { color: var(--grey); margin: 0 0 12px; }
nav { margin: 12px 0 0; font-size: 14px; }
nav a { margin-right: 14px; }
a { color: var(--blue); }
table { border-collapse: collapse; margin: 6px 0 12px; background: white; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.yes { color: #137333; font-weight: 600; }
td.no { color: #b3261e; font-weight: 600; }
.status-ok { color: #137333; font-weight: 600; }
.status-failed, .status-interrupted { color: #b3261e; font-weight: 600; }
figure { margin: 18px 0 30px; background: white; border: 1px solid var(--line);
         border-radius: 6px; padding: 14px; }
figure img { max-width: 100%; max-height: 760px; width: auto; height: auto; display: block;
             margin: 0 auto; }
figcaption { margin-top: 10px; font-size: 14px; }
figcaption .paper { color: #333; }
figcaption .ours { margin-top: 6px; padding: 6px 10px; background: #eef5fb;
                   border-left: 4px solid var(--blue); }
figcaption .files { margin-top: 6px; font-size: 12.5px; color: var(--grey); }
.scroll { overflow-x: auto; max-width: 100%; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.grid figure { margin: 0; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; color: var(--grey); }
.note { color: var(--grey); font-style: italic; }
pre { background: white; border: 1px solid var(--line); padding: 8px; overflow-x: auto;
      font-size: 12.5px; }
footer { max-width: 1180px; margin: 40px auto; padding: 0 24px; color: var(--grey);
         font-size: 13px; }
"""


# ----------------------------------------------------------------------------- small helpers


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _href(path: Path, root: Path) -> str:
    """A relative, URL-quoted link from ``root`` (the folder of index.html) to ``path``."""
    return quote(Path(os.path.relpath(path, root)).as_posix())


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path.name} could not be read ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, None


def _format_scalar(value: Any) -> tuple[str, str]:
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


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _cell(value: Any, depth: int) -> str:
    if _is_scalar(value):
        text, cls = _format_scalar(value)
        return f'<td class="{cls}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>"
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
    if _is_scalar(value):
        return _e(_format_scalar(value)[0])
    if depth >= MAX_DEPTH:
        return f"<pre>{_e(json.dumps(value, indent=1)[:2000])}</pre>"
    if isinstance(value, list):
        if not value:
            return '<span class="note">empty</span>'
        if all(_is_scalar(v) for v in value):
            shown = ", ".join(_format_scalar(v)[0] for v in value[:MAX_LIST_ITEMS])
            more = len(value) - MAX_LIST_ITEMS
            return _e(f"[{shown}{f', … ({more} more)' if more > 0 else ''}]")
        if all(isinstance(v, Mapping) and all(_is_scalar(x) for x in v.values()) for v in value):
            return _matrix({str(i): v for i, v in enumerate(value)}, depth, corner="#")
        items = "".join(f"<li>{render_value(v, depth + 1)}</li>" for v in value[:MAX_LIST_ITEMS])
        return f"<ol start=0>{items}</ol>"
    if isinstance(value, Mapping):
        if not value:
            return '<span class="note">empty</span>'
        inner = list(value.values())
        if all(isinstance(v, Mapping) and v for v in inner) and all(
            _is_scalar(x) for v in inner for x in v.values()
        ):
            return _matrix(value, depth)
        rows = "".join(
            f"<tr><th>{_e(k)}</th>{_cell(value[k], depth)}</tr>"
            for k in _verdict_first(list(value))
        )
        return f"<table>{rows}</table>"
    return _e(repr(value))


def _matrix(rows: Mapping[str, Mapping[str, Any]], depth: int, corner: str = "") -> str:
    columns: list[str] = []
    for inner in rows.values():
        columns += [c for c in inner if c not in columns]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{_e(name)}</th>" + "".join(_cell(inner.get(c), depth) for c in columns) + "</tr>"
        for name, inner in rows.items()
    )
    return f"<table><tr><th>{_e(corner)}</th>{head}</tr>{body}</table>"


# ----------------------------------------------------------------------------- notebooks


def export_notebooks(executed_dir: Path, *, force: bool = False) -> dict[str, dict[str, Any]]:
    """Export every ``*.ipynb`` of ``executed_dir`` to HTML beside it.

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

                exporter = HTMLExporter(template_name="lab")
            body, _ = exporter.from_filename(str(nb))
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, target)
            entry["html"] = target
        except Exception as exc:  # nbconvert raises many kinds; the report must go on
            entry["note"] = f"not converted to HTML ({type(exc).__name__}: {exc})"[:300]
    return out


# ----------------------------------------------------------------------------- sections


def _summary_section(summary: dict | None, note: str | None, exported: dict, root: Path) -> str:
    parts = ['<h2 id="run">Run</h2>']
    if summary is None:
        parts.append(f'<p class="note">{_e(note or "no run summary found (run_summary.json)")}</p>')
    else:
        facts = {
            "profile": summary.get("profile"),
            "git commit": summary.get("git_commit"),
            "started": summary.get("started"),
            "finished": summary.get("finished"),
            "status": summary.get("status"),
        }
        parts.append(render_value(facts))
    rows = []
    listed = {nb.get("notebook"): nb for nb in (summary or {}).get("notebooks", [])}
    for stem in sorted(set(listed) | set(exported)):
        nb = listed.get(stem, {})
        entry = exported.get(stem)
        links = []
        if entry and entry["html"] is not None:
            links.append(f'<a href="{_href(entry["html"], root)}">HTML</a>')
        if entry:
            links.append(f'<a href="{_href(entry["ipynb"], root)}">.ipynb</a>')
        if entry and entry["note"]:
            links.append(f'<span class="note">{_e(entry["note"])}</span>')
        status = nb.get("status", "not in this run")
        seconds = nb.get("seconds")
        error = nb.get("error") or {}
        err = f"{error.get('ename', '')}: {error.get('evalue', '')}" if error else ""
        if error.get("cell"):
            err = f"cell {error['cell']}: {err}"
        rows.append(
            f"<tr><th>{_e(stem)}</th>"
            f'<td class="status-{_e(status)}">{_e(status)}</td>'
            f'<td class="num">{_e(f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "–")}</td>'
            f"<td>{' · '.join(links) or '–'}</td><td>{_e(err[:400])}</td></tr>"
        )
    if rows:
        parts.append(
            "<table><tr><th>notebook</th><th>status</th><th>time</th>"
            "<th>executed notebook</th><th>error</th></tr>" + "".join(rows) + "</table>"
        )
    return "\n".join(parts)


def _figure_html(
    png: Path, root: Path, caption: str | None, finding: str | None, numbers: Any = None
) -> str:
    siblings = [
        f'<a href="{_href(png.with_suffix(s), root)}">{s[1:].upper()}</a>'
        for s in (".png", ".pdf", ".svg")
        if png.with_suffix(s).is_file()
    ]
    body = [f'<div class="paper">{_e(caption)}</div>' if caption and caption != png.stem else ""]
    if finding:
        body.append(f'<div class="ours"><b>Ours:</b> {_e(finding)}</div>')
    if numbers:
        body.append(
            "<details><summary>the numbers behind it</summary>"
            f'<div class="scroll">{render_value(numbers)}</div></details>'
        )
    body.append(f'<div class="files">{_e(png.stem)} · {" · ".join(siblings)}</div>')
    return (
        f'<figure id="{_e(png.stem)}"><a href="{_href(png, root)}">'
        f'<img src="{_href(png, root)}" alt="{_e(png.stem)}"></a>'
        f"<figcaption>{''.join(body)}</figcaption></figure>"
    )


def _figures_section(figures_dir: Path, root: Path, metrics: dict[str, dict]) -> str:
    pngs = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    recorded = (metrics.get(FIGURES_NOTEBOOK) or {}).get("metrics", {}).get("figures", {})
    recorded = recorded if isinstance(recorded, Mapping) else {}
    parts = ['<h2 id="paper-figures">Paper figures 1–7</h2>']
    by_stem = {p.stem: p for p in pngs}
    paper = [stem for stem in PAPER_FIGURES if stem in by_stem]
    if not paper:
        parts.append('<p class="note">No paper figure yet: run notebook 07.</p>')
    for stem in paper:
        info = recorded.get(stem) if isinstance(recorded.get(stem), Mapping) else {}
        caption = info.get("caption") or PAPER_FIGURES[stem].caption
        finding = info.get("finding") or "(no finding recorded: notebook 07 has not run)"
        parts.append(f"<h3>{_e(PAPER_FIGURES[stem].title)}</h3>")
        parts.append(_figure_html(by_stem[stem], root, caption, finding, info.get("numbers")))
    others = [p for p in pngs if p.stem not in PAPER_FIGURES]
    if others:
        parts.append('<h2 id="other-figures">Figures by notebook</h2>')
        groups: dict[str, list[Path]] = {}
        for p in others:
            match = re.match(r"^(\d{2})-", p.name)
            groups.setdefault(f"Notebook {match.group(1)}" if match else "Other", []).append(p)
        for name, items in sorted(groups.items()):
            parts.append(f"<h3>{_e(name)}</h3><div class='grid'>")
            for p in items:
                info = recorded.get(p.stem) if isinstance(recorded.get(p.stem), Mapping) else {}
                parts.append(
                    _figure_html(p, root, info.get("caption") or p.stem, info.get("finding"))
                )
            parts.append("</div>")
    return "\n".join(parts)


def _evaluation_section(metrics: dict[str, dict]) -> str:
    record = metrics.get(EVALUATION_NOTEBOOK)
    if not record:
        return ""
    evaluation = record.get("metrics", {}).get("evaluation")
    if not isinstance(evaluation, Mapping) or not evaluation:
        return ""
    return (
        '<h2 id="evaluation">Held-out evaluation (notebook 03)</h2>'
        "<p class='sub'>One row per model, on the test conversations in PCA space: Gaussian "
        "NLL of one step (lower is better), drift R², interval coverage, multi-step "
        "energy distance and MMD by horizon (0 for a perfect model).</p>"
        + f'<div class="scroll">{_matrix(evaluation, 0, corner="model")}</div>'
    )


def _metrics_section(metrics: dict[str, dict], problems: dict[str, str]) -> str:
    if not metrics and not problems:
        return '<h2 id="numbers">Recorded numbers</h2><p class="note">No metrics recorded yet.</p>'
    parts = ['<h2 id="numbers">Recorded numbers</h2>']
    for stem in sorted(set(metrics) | set(problems)):
        parts.append(f'<h3 id="m-{_e(stem)}">{_e(stem)}</h3>')
        if stem in problems:
            parts.append(f'<p class="note">{_e(problems[stem])}</p>')
            continue
        record = metrics[stem]
        values = dict(record.get("metrics", record))
        if stem == EVALUATION_NOTEBOOK:
            values.pop("evaluation", None)  # shown as its own table above
        if stem == FIGURES_NOTEBOOK:
            values.pop("figures", None)  # shown under each figure
        shown = render_value(values) if values else '<p class="note">nothing else</p>'
        parts.append(f'<div class="scroll">{shown}</div>')
        params = record.get("parameters")
        if isinstance(params, Mapping) and params:
            parts.append(f"<details><summary>parameters</summary>{render_value(params)}</details>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the page


def build_report(
    reports_dir: str | os.PathLike | None = None,
    *,
    run_summary: str | os.PathLike | None = None,
    executed_dir: str | os.PathLike | None = None,
    convert: bool = True,
    title: str = "An SDE lens on LLM text generation: results",
) -> Path:
    """Write ``<reports_dir>/index.html`` and return its path.

    ``reports_dir`` defaults to ``paths.REPORTS_DIR``; it holds ``figures/``, ``metrics/``,
    ``notebooks/`` (``executed_dir``) and ``run_summary.json`` (``run_summary``), any of
    which may be missing. With ``convert`` the executed notebooks are exported to HTML
    first (:func:`export_notebooks`). The page is written atomically.
    """
    root = Path(reports_dir or paths.REPORTS_DIR).resolve()
    root.mkdir(parents=True, exist_ok=True)
    summary_path = Path(run_summary) if run_summary else root / "run_summary.json"
    executed = Path(executed_dir) if executed_dir else root / "notebooks"

    summary, summary_note = _read_json(summary_path) if summary_path.is_file() else (None, None)
    if convert:
        exported = export_notebooks(executed)
    else:
        exported = {
            nb.stem: {
                "ipynb": nb,
                "html": nb.with_suffix(".html") if nb.with_suffix(".html").is_file() else None,
                "note": None,
            }
            for nb in (sorted(executed.glob("*.ipynb")) if executed.is_dir() else [])
        }
    metrics: dict[str, dict] = {}
    problems: dict[str, str] = {}
    metrics_dir = root / "metrics"
    for path in sorted(metrics_dir.glob("*.json")) if metrics_dir.is_dir() else []:
        data, note = _read_json(path)
        if data is None:
            problems[path.stem] = note
        else:
            metrics[path.stem] = data

    built = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    profile = (summary or {}).get("profile")
    sub = f"profile <b>{_e(profile)}</b> · " if profile else ""
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{_e(title)}</h1>
<p class="sub">{sub}Reproduction of Zhang, <i>Unraveling Text Generation in LLMs: A Stochastic
Differential Equation Approach</i> (arXiv 2408.11863). Built {_e(built)}.</p>
<nav><a href="#run">Run</a><a href="#paper-figures">Paper figures</a>
<a href="#other-figures">Figures by notebook</a><a href="#evaluation">Evaluation</a>
<a href="#numbers">Recorded numbers</a></nav>
</header>
<main>
{_summary_section(summary, summary_note, exported, root)}
{_figures_section(root / "figures", root, metrics)}
{_evaluation_section(metrics)}
{_metrics_section(metrics, problems)}
</main>
<footer>Generated by <code>python -m sde_utils.pipeline.report</code> from the files in this folder.</footer>
</body>
</html>
"""
    index = root / "index.html"
    tmp = root / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index


def try_build_report(*args, **kwargs) -> Path | None:
    """:func:`build_report`, but a failure is a warning, never an exception (for the runner,
    whose own outcome must not be masked by the report)."""
    try:
        return build_report(*args, **kwargs)
    except Exception as exc:
        warnings.warn(f"the report was not built: {type(exc).__name__}: {exc}", stacklevel=2)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sde_utils.pipeline.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("reports_dir", nargs="?", type=Path, help="default: reports/")
    parser.add_argument("--no-convert", action="store_true", help="skip the notebook export")
    args = parser.parse_args(argv)
    index = build_report(args.reports_dir, convert=not args.no_convert)
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
