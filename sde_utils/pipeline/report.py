"""The browsable report: ``reports/index.html``, one static page over what a run wrote.

    python -m sde_utils.pipeline.report [REPORTS_DIR]

The page is self-contained: inline CSS, no script, no network, every link relative to
``reports/`` so the folder can be moved or committed and browsed as files. It reads, in
order of what a reader wants first:

1. **Findings**: sentences generated from each notebook's recorded numbers
   (:mod:`sde_utils.pipeline.findings`), each block labelled with the profile and commit
   that produced it;
2. **Verdicts**: every notebook's ``verdicts`` as a table;
3. **Figures**: the paper's figures 1-7 (the paper's caption and ours), then every other
   figure of ``reports/figures/``, full width, each with its caption;
4. **Run**: status and time per notebook, links to the executed notebooks (exported to
   offline HTML beside them) and to the raw numbers;
5. **Recorded numbers**: each ``reports/metrics/*.json``, linked and collapsed.

A notebook that did not finish in the latest run keeps its older numbers on the page,
marked *stale*.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sde_utils import paths
from sde_utils.captions import NOTEBOOK_FIGURES, PAPER_FIGURES
from sde_utils.pipeline.export import export_notebooks
from sde_utils.pipeline.findings import findings
from sde_utils.pipeline.render import esc, href, matrix, read_json, render_value
from sde_utils.pipeline.style import CSS

__all__ = ["build_report", "try_build_report", "export_notebooks", "render_value", "main"]

FIGURES_NOTEBOOK = "07-paper-figures"
EVALUATION_NOTEBOOK = "03-train-sde"


# ----------------------------------------------------------------------------- sections


def _stamp(record: Mapping[str, Any] | None, stale: bool) -> str:
    """``profile P · commit C`` of the run that wrote ``record``, and a stale mark."""
    run = (record or {}).get("run") or {}
    bits = []
    if run.get("profile"):
        bits.append(f"profile {run['profile']}")
    if run.get("git_commit"):
        bits.append(f"commit {str(run['git_commit'])[:12]}")
    text = f'<span class="stamp">{esc(" · ".join(bits))}</span>' if bits else ""
    if stale:
        text += (
            ' <span class="stale">stale: the latest run of this notebook did not finish; '
            "these numbers are from an earlier run</span>"
        )
    return text


def _findings_section(metrics: dict[str, dict], stale: set[str]) -> str:
    parts = ['<h2 id="findings">What the run finds</h2>']
    if not metrics:
        return parts[0] + '<p class="note">No metrics recorded yet: run the notebooks.</p>'
    for stem in sorted(metrics):
        lines = findings(stem, metrics[stem])
        if not lines:
            continue
        parts.append(f"<h3>{esc(stem)}{_stamp(metrics[stem], stem in stale)}</h3>")
        parts.append(
            '<ul class="findings">' + "".join(f"<li>{esc(s)}</li>" for s in lines) + "</ul>"
        )
    return "\n".join(parts)


def _verdict_tables(verdicts: Mapping[str, Any]) -> str:
    """Scalar verdicts as one key/value table, per-model verdicts (``{check: {model:
    value}}``) as one matrix with a row per check and a column per model."""
    flat = {k: v for k, v in verdicts.items() if not isinstance(v, Mapping)}
    nested = {k: v for k, v in verdicts.items() if isinstance(v, Mapping)}
    out = []
    if flat:
        out.append(render_value(flat))
    if nested:
        simple = all(
            not isinstance(x, (Mapping, list)) for v in nested.values() for x in v.values()
        )
        out.append(matrix(nested, 0) if simple else render_value(nested))
    return f'<div class="table-wrap">{"".join(out)}</div>'


def _verdicts_section(metrics: dict[str, dict], stale: set[str]) -> str:
    parts = [
        '<h2 id="verdicts">Verdicts</h2><p class="sub">Each notebook\'s verdict table, the '
        "source of the findings above; click a notebook to open it.</p>"
    ]
    for stem in sorted(metrics):
        verdicts = metrics[stem].get("metrics", {}).get("verdicts")
        if not verdicts:
            continue
        if isinstance(verdicts, list) and all(isinstance(v, Mapping) for v in verdicts):
            rows = {
                str(i + 1): {k: v for k, v in row.items() if k != "numbers"}
                for i, row in enumerate(verdicts)
            }
            table = f'<div class="table-wrap">{matrix(rows, 0, corner="#")}</div>'
        elif isinstance(verdicts, Mapping):
            table = _verdict_tables(verdicts)
        else:
            table = f'<div class="table-wrap">{render_value(verdicts)}</div>'
        parts.append(
            f'<details class="verdicts"><summary><b>{esc(stem)}</b> · {len(verdicts)} '
            f"verdict{'s' if len(verdicts) != 1 else ''}{_stamp(metrics[stem], stem in stale)}"
            f"</summary>{table}</details>"
        )
    if len(parts) == 1:
        parts.append('<p class="note">No verdict recorded yet.</p>')
    return "\n".join(parts)


def _evaluation_section(metrics: dict[str, dict]) -> str:
    record = metrics.get(EVALUATION_NOTEBOOK)
    evaluation = (record or {}).get("metrics", {}).get("evaluation")
    if not isinstance(evaluation, Mapping) or not evaluation:
        return ""
    return (
        f'<h3 id="evaluation">Held-out evaluation ({EVALUATION_NOTEBOOK})</h3>'
        "<p class='sub'>One row per model, on the test conversations in PCA space: Gaussian "
        "NLL of one step (lower is better), drift R², interval coverage, multi-step "
        "energy distance and MMD by horizon (0 for a perfect model).</p>"
        + f'<div class="table-wrap">{matrix(evaluation, 0, corner="model")}</div>'
    )


# A figure spans both grid columns when it is a long row of panels: at least this much
# wider than tall and this many pixels wide (a half column would shrink it over 3.5x).
WIDE_ASPECT = 2.2
WIDE_PX = 2000


def _png_size(png: Path) -> tuple[int, int]:
    """(width, height) from the PNG header; (0, 0) when the file is not a readable PNG."""
    with open(png, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return 0, 0
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _spans_columns(png: Path) -> bool:
    width, height = _png_size(png)
    return height > 0 and width >= WIDE_PX and width / height >= WIDE_ASPECT


def _figure_html(
    png: Path, root: Path, caption: str | None, finding: str | None, wide: bool = False
) -> str:
    siblings = [
        f'<a href="{href(png.with_suffix(s), root)}">{s[1:].upper()}</a>'
        for s in (".png", ".pdf", ".svg")
        if png.with_suffix(s).is_file()
    ]
    body = [f"<div>{esc(caption)}</div>" if caption else ""]
    if finding:
        body.append(f'<div class="ours"><b>Ours:</b> {esc(finding)}</div>')
    body.append(f'<div class="files">{esc(png.stem)} · {" · ".join(siblings)}</div>')
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure id="{esc(png.stem)}"{cls}><a href="{href(png, root)}">'
        f'<img src="{href(png, root)}" alt="{esc(caption or png.stem)}"></a>'
        f"<figcaption>{''.join(body)}</figcaption></figure>"
    )


def _recorded_figures(metrics: dict[str, dict]) -> dict[str, Mapping]:
    """``figures`` records (caption, finding) any notebook saved, by figure stem."""
    out: dict[str, Mapping] = {}
    for record in metrics.values():
        figs = record.get("metrics", {}).get("figures")
        if isinstance(figs, Mapping):
            out.update({k: v for k, v in figs.items() if isinstance(v, Mapping)})
    return out


def _figures_section(
    figures_dir: Path, root: Path, metrics: dict[str, dict], stale: set[str]
) -> str:
    pngs = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    recorded = _recorded_figures(metrics)
    by_stem = {p.stem: p for p in pngs}
    parts = ['<h2 id="figures">Paper figures 1–7</h2>']
    paper = [stem for stem in PAPER_FIGURES if stem in by_stem]
    if not paper:
        parts.append('<p class="note">No paper figure yet: run notebook 07.</p>')
    if paper and FIGURES_NOTEBOOK in stale:
        parts.append(f"<p>{_stamp(metrics.get(FIGURES_NOTEBOOK), True)}</p>")
    for stem in paper:
        info = recorded.get(stem, {})
        caption = info.get("caption") or PAPER_FIGURES[stem].caption
        finding = info.get("finding") or "(no finding recorded: notebook 07 has not run)"
        parts.append(f"<h3>{esc(PAPER_FIGURES[stem].title)}</h3>")
        parts.append(_figure_html(by_stem[stem], root, caption, finding))
    others = [p for p in pngs if p.stem not in PAPER_FIGURES]
    if others:
        parts.append('<h2 id="notebook-figures">Figures by notebook</h2>')
        groups: dict[str, list[Path]] = {}
        for p in others:
            match = re.match(r"^(\d{2})-", p.name)
            groups.setdefault(match.group(1) if match else "other", []).append(p)
        stems = {s[:2]: s for s in metrics}
        for number, items in sorted(groups.items()):
            stem = stems.get(number, f"Notebook {number}")
            parts.append(f"<h3>{esc(stem)}{_stamp(metrics.get(stem), stem in stale)}</h3>")
            parts.append('<div class="nbfigs">')
            # the two-column figures first, then the ones spanning both: rows stay full
            wide = {p: _spans_columns(p) for p in items}
            for p in sorted(items, key=lambda q: wide[q]):
                info = recorded.get(p.stem, {})
                caption = info.get("caption") or NOTEBOOK_FIGURES.get(p.stem) or p.stem
                parts.append(_figure_html(p, root, caption, info.get("finding"), wide[p]))
            parts.append("</div>")
    return "\n".join(parts)


def _run_section(summary: dict | None, note: str | None, exported: dict, root: Path) -> str:
    parts = ['<h2 id="run">Run</h2>']
    if summary is None:
        parts.append(
            f'<p class="note">{esc(note or "no run summary found (run_summary.json)")}</p>'
        )
    rows = []
    listed = {nb.get("notebook"): nb for nb in (summary or {}).get("notebooks", [])}
    for stem in sorted(set(listed) | set(exported)):
        nb = listed.get(stem, {})
        entry = exported.get(stem)
        links = []
        if entry and entry["html"] is not None:
            links.append(f'<a href="{href(entry["html"], root)}">HTML</a>')
        if entry:
            links.append(f'<a href="{href(entry["ipynb"], root)}">.ipynb</a>')
        metrics_file = root / "metrics" / f"{stem}.json"
        if metrics_file.is_file():
            links.append(f'<a href="{href(metrics_file, root)}">numbers (JSON)</a>')
        if entry and entry["note"]:
            links.append(f'<span class="note">{esc(entry["note"])}</span>')
        status = nb.get("status", "not in this run")
        seconds = nb.get("seconds")
        error = nb.get("error") or {}
        err = f"{error.get('ename', '')}: {error.get('evalue', '')}" if error else ""
        if error.get("cell"):
            err = f"cell {error['cell']}: {err}"
        rows.append(
            f"<tr><th>{esc(stem)}</th>"
            f'<td class="status-{esc(status)}">{esc(status)}</td>'
            f'<td class="num">{esc(f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "–")}</td>'
            f"<td>{' · '.join(links) or '–'}</td><td>{esc(err[:400])}</td></tr>"
        )
    if rows:
        parts.append(
            '<div class="table-wrap"><table><tr><th>notebook</th><th>status</th><th>time</th>'
            "<th>outputs</th><th>error</th></tr>" + "".join(rows) + "</table></div>"
        )
    return "\n".join(parts)


def _numbers_section(
    metrics: dict[str, dict], problems: dict[str, str], root: Path, stale: set[str]
) -> str:
    parts = [
        '<h2 id="numbers">Recorded numbers</h2>'
        '<p class="sub">Every number each notebook recorded, with the parameters that produced '
        "it; click to open, or follow the JSON link.</p>"
    ]
    for stem in sorted(set(metrics) | set(problems)):
        if stem in problems:
            parts.append(f'<h3>{esc(stem)}</h3><p class="note">{esc(problems[stem])}</p>')
            continue
        record = metrics[stem]
        link = href(root / "metrics" / f"{stem}.json", root)
        parts.append(
            f'<details id="m-{esc(stem)}"><summary><b>{esc(stem)}</b>{_stamp(record, stem in stale)} · '
            f'<a href="{link}">JSON</a></summary>'
            f'<div class="table-wrap">{render_value(record.get("metrics", record))}</div>'
            f"<details><summary>parameters</summary>{render_value(record.get('parameters', {}))}</details>"
            "</details>"
        )
    if len(parts) == 1:
        parts.append('<p class="note">No metrics recorded yet.</p>')
    return "\n".join(parts)


def _stale_notebooks(summary: dict | None) -> set[str]:
    """Notebooks whose latest run did not finish (their recorded numbers are older)."""
    return {
        nb.get("notebook")
        for nb in (summary or {}).get("notebooks", [])
        if nb.get("status") in ("failed", "interrupted", "running")
    }


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

    summary, summary_note = read_json(summary_path) if summary_path.is_file() else (None, None)
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
        data, note = read_json(path)
        if data is None:
            problems[path.stem] = note
        else:
            metrics[path.stem] = data
    stale = _stale_notebooks(summary)

    built = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    facts = []
    if summary:
        facts.append(f"profile <b>{esc(summary.get('profile'))}</b>")
        if summary.get("git_commit"):
            facts.append(f"commit <code>{esc(str(summary['git_commit'])[:12])}</code>")
        facts.append(
            f"run {esc(summary.get('status'))}, finished {esc(summary.get('finished') or '–')}"
        )
    banner = ""
    if summary and summary.get("status") not in ("ok", None):
        banner = (
            f'<p class="banner">The latest run ended <b>{esc(summary.get("status"))}</b>; '
            "blocks marked stale show numbers from an earlier run.</p>"
        )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{esc(title)}</h1>
<p class="sub">{" · ".join(facts)}{" · " if facts else ""}built {esc(built)}. A reproduction of
Zhang, <i>Unraveling Text Generation in LLMs: A Stochastic Differential Equation Approach</i>
(arXiv 2408.11863).</p>
{banner}
<nav><a href="#findings">Findings</a><a href="#verdicts">Verdicts</a><a href="#figures">Paper figures</a>
<a href="#notebook-figures">Figures by notebook</a><a href="#run">Run</a><a href="#numbers">Recorded numbers</a></nav>
</header>
<main>
{_findings_section(metrics, stale)}
{_verdicts_section(metrics, stale)}
{_evaluation_section(metrics)}
{_figures_section(root / "figures", root, metrics, stale)}
{_run_section(summary, summary_note, exported, root)}
{_numbers_section(metrics, problems, root, stale)}
</main>
<footer>Generated by <code>python -m sde_utils.pipeline.report</code> from the files in this folder.</footer>
</body>
</html>
"""
    index = root / "index.html"
    tmp = root / f".index.html.{os.getpid()}.tmp"
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
