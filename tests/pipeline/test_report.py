"""The static report: built from a fake reports folder, checked as HTML and in Chromium."""

import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sde_utils.captions import PAPER_FIGURES  # noqa: E402
from sde_utils.paths import PROJ_ROOT  # noqa: E402
from sde_utils.pipeline.report import build_report, main, render_value, try_build_report  # noqa: E402

FINDING = "the drift path beats the mean by 31% at step 1 and not after step 3"


# ----------------------------------------------------------------------------- the fake folder


def _png(path: Path, color: str) -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.arange(5), np.arange(5) ** 2, color=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=50)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def _write(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


@pytest.fixture
def reports(tmp_path):
    root = tmp_path / "reports"
    _png(root / "figures" / "fig2-actual-vs-predicted.png", "C0")
    _png(root / "figures" / "01-lengths.png", "C3")
    _write(
        root / "metrics" / "03-train-sde.json",
        {
            "notebook": "03-train-sde",
            "parameters": {"pca_dim": 8, "epochs": 30},
            "metrics": {
                "evaluation": {
                    "neural_sde": {"nll": 2.7226119, "drift_r2": 0.5773},
                    "random_walk": {"nll": 3.0748098, "drift_r2": -0.0003},
                },
                "verdicts": {"random_walk": {"beats_on_nll": True, "nll_gain": 0.352}},
            },
        },
    )
    _write(
        root / "metrics" / "05-lyapunov-stability.json",
        {
            "notebook": "05-lyapunov-stability",
            "parameters": {"seed": 0},
            "metrics": {"n_states": 1234, "verdicts": {"stable": False, "margin": -0.25}},
        },
    )
    _write(
        root / "metrics" / "07-paper-figures.json",
        {
            "notebook": "07-paper-figures",
            "parameters": {},
            "metrics": {
                "figures": {
                    "fig2-actual-vs-predicted": {
                        "caption": PAPER_FIGURES["fig2-actual-vs-predicted"].caption,
                        "finding": FINDING,
                    }
                }
            },
        },
    )
    (root / "metrics" / "99-broken.json").write_text("{not json")
    _write(
        root / "run_summary.json",
        {
            "profile": "quick",
            "git_commit": "abc123",
            "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:01:00+00:00",
            "status": "failed",
            "notebooks": [
                {"notebook": "01-tiny", "status": "ok", "seconds": 1.25},
                {
                    "notebook": "02-broken",
                    "status": "failed",
                    "seconds": 0.5,
                    "error": {"cell": 3, "ename": "ValueError", "evalue": "boom"},
                },
            ],
        },
    )
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(6 * 7)", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), cell]
    (root / "notebooks").mkdir(parents=True)
    nbformat.write(nb, root / "notebooks" / "01-tiny.ipynb")
    (root / "notebooks" / "02-broken.ipynb").write_text("this is not a notebook")
    return root


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src"))
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def _refs(index: Path) -> _Refs:
    parser = _Refs()
    parser.feed(index.read_text())
    return parser


# ----------------------------------------------------------------------------- the page


def test_every_figure_shown_and_every_link_resolves(reports):
    index = build_report(reports)
    assert index == reports / "index.html"
    refs = _refs(index)
    shown = {Path(unquote(src)).name for src in refs.images}
    assert shown == {p.name for p in (reports / "figures").glob("*.png")}
    for ref in refs.images + refs.links:
        if ref.startswith("#"):
            continue
        assert not urlparse(ref).scheme, f"{ref}: the page must not reach the network"
        assert (reports / unquote(ref)).is_file(), f"broken link {ref}"
    page = index.read_text()
    assert "<script" not in page
    anchors = set(re.findall(r'id="([^"]+)"', page))
    assert {r[1:] for r in refs.links if r.startswith("#")} <= anchors


def test_page_shows_captions_findings_tables_and_notes(reports):
    page = html.unescape(build_report(reports).read_text())
    # the paper's caption and our finding under the paper figure
    assert PAPER_FIGURES["fig2-actual-vs-predicted"].caption in page
    assert FINDING in page
    # notebook 03's evaluation as a model x metric table, 4 significant digits
    assert "Held-out evaluation" in page
    assert "2.723" in page and "3.075" in page and "0.5773" in page
    # findings first, generated from the numbers; the failed notebook's block is stale
    assert page.index('id="findings"') < page.index('id="verdicts"')
    assert "Held-out one-step NLL per dimension" in page and "neural_sde 2.72" in page
    # verdicts of 03 and 05, rendered generically, booleans as yes/no
    assert '<td class="yes">yes</td>' in page and '<td class="no">no</td>' in page
    assert "-0.25" in page and "1234" in page
    # the run summary: profile, commit, time and status per notebook, the error
    assert "abc123" in page and "1.2 s" in page and "ValueError: boom" in page
    # a metrics file that cannot be read and a notebook that cannot be converted: notes
    assert "99-broken.json could not be read" in page
    assert "02-broken" in page and "not converted to HTML" in page
    # the tiny notebook was exported with its output
    exported = reports / "notebooks" / "01-tiny.html"
    assert exported.is_file() and "42" in exported.read_text()
    assert 'href="notebooks/01-tiny.html"' in page


def test_export_is_reused_when_up_to_date(reports):
    build_report(reports)
    exported = reports / "notebooks" / "01-tiny.html"
    exported.write_text("kept")  # newer than the notebook: not converted again
    build_report(reports)
    assert exported.read_text() == "kept"
    os.utime(exported, (1, 1))  # older than the notebook: converted again
    build_report(reports)
    assert "42" in exported.read_text()


def test_any_subset_of_outputs_builds(tmp_path):
    index = build_report(tmp_path / "empty")
    page = index.read_text()
    assert "No paper figure yet" in page and "No metrics recorded yet" in page
    assert "no run summary found" in page
    # only a figure, nothing else
    _png(tmp_path / "one" / "figures" / "fig1-losses.png", "C0")
    page = html.unescape(build_report(tmp_path / "one", convert=False).read_text())
    assert PAPER_FIGURES["fig1-losses"].caption in page  # the caption without notebook 07
    assert "notebook 07 has not run" in page


def test_render_value_tables():
    # a dict of flat dicts is one table: rows = outer keys, columns = union of inner keys
    out = render_value({"a": {"x": 1, "y": 0.5}, "b": {"y": True, "z": None}})
    assert out.count("<tr>") == 3
    assert out.index(">x<") < out.index(">y<") < out.index(">z<")
    # entries naming a verdict come first; long lists are cut
    out = render_value({"n": 3, "verdicts": {"ok": True}, "xs": list(range(40))})
    assert out.index("verdicts") < out.index(">n<")
    assert "28 more" in out
    # scalars: 4 significant digits, tiny and huge in scientific notation, escaped text
    assert render_value(0.123456) == "0.1235" and render_value(1.5e-7) == "1.500e-07"
    assert render_value("<b>") == "&lt;b&gt;"


def test_try_build_report_never_raises(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert try_build_report(not_a_folder) is None
    assert any("report was not built" in str(w.message) for w in caught)


def test_cli_builds(reports, capsys):
    assert main([str(reports), "--no-convert"]) == 0
    assert "index.html" in capsys.readouterr().out
    assert not (reports / "notebooks" / "01-tiny.html").exists()  # --no-convert


# ----------------------------------------------------------------------------- in Chromium

IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  var out = [];
  document.querySelectorAll("img").forEach(function (img) {
    out.push({src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth});
  });
  var pre = document.createElement("pre");
  pre.id = "image-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and root, else a skip."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip(
            "/usr/bin/chromium is missing and installing it (apt-get install -y chromium) "
            "needs root, which this test is not running as"
        )
    if shutil.which("apt-get") is None:
        pytest.skip("/usr/bin/chromium is missing and there is no apt-get to install it")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            pytest.skip(
                f"/usr/bin/chromium is missing and `{' '.join(cmd)}` failed "
                f"(exit {proc.returncode}): {(proc.stderr or proc.stdout)[-300:]}"
            )
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("apt-get install -y chromium succeeded but /usr/bin/chromium is missing")
    return "/usr/bin/chromium"


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _image_probe(binary: str, page: Path, tmp_path: Path, name: str) -> list[dict]:
    proc = _run_chromium(
        binary,
        tmp_path / f"profile-{name}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    )
    match = re.search(r'<pre id="image-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the probe did not run; chromium said: {proc.stderr[-1500:]}"
    return json.loads(html.unescape(match.group(1)))


LAYOUT_PROBE = """<script>
window.addEventListener("load", function () {
  var d = document.documentElement, wide = [];
  document.querySelectorAll("body *").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > d.clientWidth + 1 && !el.closest(".table-wrap")) wide.push(el.tagName);
  });
  var pre = document.createElement("pre");
  pre.id = "layout-probe";
  pre.textContent = JSON.stringify({height: d.scrollHeight, scrollWidth: d.scrollWidth,
                                    clientWidth: d.clientWidth, wide: wide.slice(0, 10)});
  document.body.appendChild(pre);
});
</script>"""

MAX_HEIGHT_PX = 20_000  # at 1,400 px wide


def _layout(binary: str, page: Path, tmp_path: Path, name: str) -> dict:
    probe = page.with_name(f".layout-{name}.html")  # same folder: the same relative links
    probe.write_text(page.read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    try:
        proc = _run_chromium(
            binary, tmp_path / f"profile-layout-{name}", "--window-size=1400,1000",
            "--virtual-time-budget=10000", "--dump-dom", probe.as_uri(),
        )  # fmt: skip
    finally:
        probe.unlink()
    match = re.search(r'<pre id="layout-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the layout probe did not run; chromium said: {proc.stderr[-1500:]}"
    return json.loads(html.unescape(match.group(1)))


def _external(page: str) -> list[str]:
    """Every resource the page would load from the network."""
    return re.findall(r'(?:src|href)\s*=\s*["\'](?:https?:)?//[^"\']+', page)


def test_layout_probe_sees_overflow_and_height(reports, tmp_path):
    # the control: a page that is too tall and too wide is measured as such
    binary = _chromium()
    bad = reports / "bad.html"
    bad.write_text("<html><body><div style='width:3000px;height:25000px'>x</div></body></html>")
    layout = _layout(binary, bad, tmp_path, "bad")
    assert layout["height"] > MAX_HEIGHT_PX and layout["scrollWidth"] > layout["clientWidth"]
    assert _external('<script src="https://cdn.example/x.js"></script>')


@pytest.mark.skipif(
    not (PROJ_ROOT / "reports" / "index.html").is_file(), reason="no committed reports/index.html"
)
def test_committed_report_reads_well(tmp_path):
    # the committed page: under 20,000 px at 1,400 px wide, nothing wider than the window,
    # every image loads, every link resolves, nothing from the network, findings first
    binary = _chromium()
    root = PROJ_ROOT / "reports"
    index = root / "index.html"
    page = index.read_text()
    assert not _external(page)
    layout = _layout(binary, index, tmp_path, "committed")
    assert layout["height"] < MAX_HEIGHT_PX, layout
    assert layout["scrollWidth"] <= layout["clientWidth"], layout
    assert not layout["wide"], layout
    refs = _refs(index)
    for ref in refs.images + refs.links:
        if not ref.startswith("#"):
            assert (root / unquote(ref)).is_file(), f"broken link {ref}"
    for exported in (root / "notebooks").glob("*.html"):
        assert not _external(exported.read_text()), exported.name
    probe = root / ".probe.html"
    probe.write_text(page.replace("</body>", IMAGE_PROBE + "</body>"))
    try:
        loaded = _image_probe(binary, probe, tmp_path, "committed")
    finally:
        probe.unlink()
    assert loaded and all(img["complete"] and img["width"] > 0 for img in loaded)
    text = html.unescape(page)
    assert text.index('id="findings"') < text.index('id="verdicts"') < text.index('id="figures"')


def test_report_in_headless_chromium(reports, tmp_path):
    binary = _chromium()
    index = build_report(reports)
    page = index.read_text()
    n_images = len(_refs(index).images)
    assert n_images == 2

    # every image of the page loads (naturalWidth > 0 once the load event has fired)
    probe_page = reports / "probe.html"  # same folder: the same relative links
    probe_page.write_text(page.replace("</body>", IMAGE_PROBE + "</body>"))
    loaded = _image_probe(binary, probe_page, tmp_path, "ok")
    assert len(loaded) == n_images
    assert all(img["complete"] and img["width"] > 0 for img in loaded), loaded

    # the probe sees a broken image when there is one (so the check above can fail)
    broken = page.replace("</main>", '<img src="figures/missing.png" alt="x"></main>')
    probe_page.write_text(broken.replace("</body>", IMAGE_PROBE + "</body>"))
    probed = {img["src"]: img["width"] for img in _image_probe(binary, probe_page, tmp_path, "x")}
    assert probed["figures/missing.png"] == 0

    # a screenshot of the real page
    shot = tmp_path / "report.png"
    proc = _run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        index.as_uri(),
    )
    assert shot.is_file(), f"no screenshot; chromium said: {proc.stderr[-1500:]}"
    with open(shot, "rb") as fh:
        header = fh.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 2000)
    pixels = mpimg.imread(shot)[..., :3]
    # non-trivial: not one flat colour; the page's text and figures vary the pixels
    assert pixels.std() > 0.05, f"the screenshot looks blank (pixel std {pixels.std():.4f})"


def test_importing_the_report_loads_no_torch():
    # the runner builds the report at the end of every run; it must stay light
    code = "import sys, sde_utils.pipeline.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_chromium_without_root_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        _chromium()


def test_a_failed_notebook_keeps_its_old_numbers_marked_stale(reports):
    # 02-broken failed in the latest run (see the fixture's run_summary); its older
    # numbers stay on the page with a stale mark, and the ok notebooks carry none
    _write(
        reports / "metrics" / "02-broken.json",
        {"notebook": "02-broken", "run": {"profile": "quick", "git_commit": "old1234"},
         "parameters": {}, "metrics": {"verdicts": {"holds": True}}},
    )  # fmt: skip
    page = html.unescape(build_report(reports, convert=False).read_text())
    block = page[page.index("<h3>02-broken") : page.index("</h3>", page.index("<h3>02-broken"))]
    assert "stale" in block and "commit old1234" in block
    block03 = page[
        page.index("<h3>03-train-sde") : page.index("</h3>", page.index("<h3>03-train-sde"))
    ]
    assert "stale" not in block03
    assert "The latest run ended <b>failed</b>" in page


def test_wide_notebook_figures_span_both_columns(reports):
    # a long row of panels (>= 2000 px wide, >= 2.2 wider than tall, like 09's depth sweep)
    # spans the two-column grid; controls: the fixture's small 3 x 2 in figure, and a figure
    # as wide in aspect but only 360 px wide, stay in one column
    fig, ax = plt.subplots(figsize=(12, 3))
    ax.plot([0, 1], [0, 1])
    fig.savefig(reports / "figures" / "09-sweep.png", dpi=200)
    fig.savefig(reports / "figures" / "09-small.png", dpi=30)
    plt.close(fig)
    page = build_report(reports, convert=False).read_text()
    assert '<figure id="09-sweep" class="wide">' in page
    assert '<figure id="01-lengths">' in page and '<figure id="09-small">' in page
