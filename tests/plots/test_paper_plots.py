"""Figure functions on small synthetic inputs: shapes, saving, errors, what is drawn."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sde_utils.analysis.app_b import AnswerProcess  # noqa: E402
from sde_utils.analysis.paper_figures import DriftField, drift_field  # noqa: E402
from sde_utils.models.baselines import LinearSDE  # noqa: E402
from sde_utils.models.train import History  # noqa: E402
from sde_utils.plots.app_b import plot_answer_process  # noqa: E402
from sde_utils.plots.labels import token_labels  # noqa: E402
from sde_utils.plots.paper import (  # noqa: E402
    plot_actual_vs_predicted,
    plot_drift_and_diffusion,
    plot_drift_pairs_and_uncertainty,
    plot_importance_attention,
    plot_trajectories_with_words,
)
from sde_utils.plots.style import ACTUAL, PREDICTED, savefig, use_style  # noqa: E402
from sde_utils.plots.training import plot_losses, plot_paths_vs_real  # noqa: E402


@pytest.fixture(autouse=True)
def _style_and_close():
    use_style()
    yield
    plt.close("all")


def rng(seed=0):
    return np.random.default_rng(seed)


def field(d=4, dims=(0, 1), n=6):
    model = LinearSDE(d).double()
    model.A.copy_(-0.5 * torch.eye(d, dtype=torch.float64))
    return drift_field(model, np.zeros(d), (-2.0, 2.0, -1.0, 1.0), dims=dims, n=n)


def process(n_steps=3, d=4):
    g = rng(1)
    return AnswerProcess(
        question="What is the capital of France?",
        answer="The capital of France is Paris.",
        question_tokens=["What", "Ġis", "Ġthe"],
        answer_tokens=["The", "Ġcapital", "Ġof"],
        z_question=g.normal(size=(3, d)),
        z_init=g.normal(size=d),
        z_answer=g.normal(size=(3, d)),
        drift=g.normal(size=(n_steps + 1, d)),
        samples=g.normal(size=(n_steps + 1, 2, d)),
        decoded_drift=[[("Ġthe", 0.9), ("Ġa", 0.5)]] * (n_steps + 1),
        decoded_samples=[[[("Ġof", 0.4)]] * (n_steps + 1)] * 2,
        decoded_roundtrip=[[("The", 1.0)]] * 3,
        top_k=2,
        dt=1.0,
        seed=0,
    )


# ----------------------------------------------------------------------------- labels, saving


def test_token_labels():
    assert token_labels(["Ġthe", "Ċ", "ĠĠ", "Ġ$5", "hello"]) == ["the", "↵", "␣", r"\$5", "hello"]
    assert token_labels(["Ġ" + "x" * 30], max_chars=6) == ["xxxxx…"]
    assert token_labels(["\x00"]) == ["U+0000"]  # a control character is named, not drawn
    with pytest.raises(TypeError, match="single string"):
        token_labels("Ġthe")


def test_savefig_writes_png_and_pdf(tmp_path):
    fig = plot_actual_vs_predicted(rng().normal(size=(5, 3)), rng(1).normal(size=(4, 3)))
    png = savefig(fig, "fig2-test", formats=("png", "pdf"), folder=tmp_path)
    assert png == tmp_path / "fig2-test.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig2-test.pdf").read_bytes()[:5] == b"%PDF-"
    assert not plt.get_fignums()  # closed
    with pytest.raises(ValueError, match="bare file stem"):
        savefig(plt.figure(), "fig.png", folder=tmp_path)


# ----------------------------------------------------------------------------- figures 1-3


def test_fig1_losses_three_panels():
    h = History()
    for e in range(4):
        h.append(
            {"total": 3 - e, "drift": 2 - e, "diffusion": 1.0},
            {"total": 3.5 - e, "drift": 2, "diffusion": 1.5},
        )
    h.best_epoch = 4
    assert len(plot_losses(h).axes) == 3
    with pytest.raises(ValueError, match="no epoch"):
        plot_losses(History())


def test_paths_vs_real_still_works():
    real = [rng().normal(size=(6, 3))]
    fig = plot_paths_vs_real(
        real, [rng(1).normal(size=(5, 3))], [rng(2).normal(size=(5, 4, 3))], coords=(0, 2)
    )
    assert len(fig.axes) == 2


def test_fig2_same_limits_and_colours():
    actual, drift = rng().normal(size=(8, 3)), 5 + rng(1).normal(size=(6, 3))
    samples = rng(2).normal(size=(6, 4, 3))
    fig = plot_actual_vs_predicted(actual, drift, samples, coords=(2, 0))
    left, right = fig.axes
    assert left.get_xlim() == right.get_xlim() and left.get_ylim() == right.get_ylim()
    # the predicted panel reaches the drift path that lies far from the actual one
    assert right.get_xlim()[1] > drift[:, 2].max() and left.get_xlabel() == "PC3"
    colours = {line.get_label(): line.get_color() for line in left.lines + right.lines}
    assert colours["drift path"] == PREDICTED and left.lines[0].get_color() == ACTUAL
    np.testing.assert_array_equal(left.lines[0].get_xdata(), actual[:, 2])
    # readable at a glance: the simulated states are one cloud and a 90% ellipse, not one
    # line per path (lines on the right: the faint actual path, the drift path, start, end)
    assert len(right.lines) == 4 and len(right.collections) == 1
    assert right.collections[0].get_offsets().shape == (5 * 4, 2)  # steps 1..5 of 4 paths
    assert [p.get_label() for p in right.patches] == ["90% region, last step"]
    with pytest.raises(ValueError, match="same time grid"):
        plot_actual_vs_predicted(actual, drift, samples[:4])
    with pytest.raises(ValueError, match="two different coordinates"):
        plot_actual_vs_predicted(actual, drift, coords=(0, 3))
    with pytest.raises(ValueError, match="NaN"):
        plot_actual_vs_predicted(np.full((3, 3), np.nan), drift)


def _overlaps(texts, renderer):
    boxes = [t.get_window_extent(renderer) for t in texts]
    return [
        (texts[a].get_text(), texts[b].get_text())
        for a in range(len(boxes))
        for b in range(a)
        if boxes[a].overlaps(boxes[b])
    ]


def test_fig3_words_labelled_without_overlap():
    g = rng(3)
    actual = g.normal(size=(10, 2))
    actual[2:6] = actual[2] + 0.01 * g.normal(size=(4, 2))  # four words in one spot
    predicted = actual[1:] + 0.3
    tokens = ["ĠThe", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", ",", "Ġand", "Ġslept", "."]
    fig = plot_trajectories_with_words(actual, predicted, tokens, predicted_labels=tokens[1:])
    assert len(fig.axes) == 1
    texts = fig.axes[0].texts
    assert [t.get_text() for t in texts[:3]] == ["0:The", "1:cat", "2:sat"]  # Ġ shown as a space
    assert len(texts) == 10 + 9
    fig.canvas.draw()
    assert _overlaps(texts, fig.canvas.get_renderer()) == []
    with pytest.raises(ValueError, match="tokens has 3 entries"):
        plot_trajectories_with_words(actual, predicted, tokens[:3])
    with pytest.raises(ValueError, match="more than actual"):
        plot_trajectories_with_words(actual[:3], predicted, tokens[:3])
    with pytest.raises(ValueError, match="predicted_labels has 2"):
        plot_trajectories_with_words(actual, predicted, tokens, predicted_labels=tokens[:2])


# ----------------------------------------------------------------------------- figures 4-5


def test_fig4_field_and_heatmap():
    f = field()
    mags = np.abs(rng().normal(size=(3, 7)))
    mags[1, 4:] = np.nan  # a shorter sequence
    fig = plot_drift_and_diffusion(f, rng(1).normal(size=(5, 4)), mags)
    assert len(fig.axes) == 4  # two panels, two colour bars
    left, right = fig.axes[:2]  # then the two colour bars
    assert left.get_xlim() == (-2.0, 2.0)
    # the response is drawn as points, not a line that would hide the field
    (tokens,) = [line for line in left.lines if line.get_label() == "tokens of a response"]
    assert tokens.get_linestyle() == "None" and len(tokens.get_xdata()) == 5
    image = right.images[0].get_array()
    assert image.shape == (3, 7) and image.mask[1, 4:].all() and not image.mask[0].any()
    fig = plot_drift_and_diffusion(f, rng(1).normal(size=(5, 4)), mags, style="quiver")
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="'stream' or 'quiver'"):
        plot_drift_and_diffusion(f, rng(1).normal(size=(5, 4)), mags, style="arrows")
    with pytest.raises(ValueError, match=">= 0"):
        plot_drift_and_diffusion(f, rng(1).normal(size=(5, 4)), -mags)
    with pytest.raises(TypeError, match="expected a DriftField"):
        plot_drift_and_diffusion(object(), rng(1).normal(size=(5, 4)), mags)
    bad = DriftField((0, 1), f.x, f.y, f.u[:, :2], f.v, 0.0)
    with pytest.raises(ValueError, match="shape"):
        plot_drift_and_diffusion(bad, rng(1).normal(size=(5, 4)), mags)


@pytest.mark.parametrize("n_pairs", [1, 3])
def test_fig5_pairs_and_log_heatmap(n_pairs):
    fields = [field(d=6, dims=(2 * k, 2 * k + 1)) for k in range(n_pairs)]
    sigma = np.exp(rng().normal(size=(5, 6)))
    tokens = ["ĠA", "Ġb", "Ġc", "Ġd", "."]
    fig = plot_drift_pairs_and_uncertainty(fields, sigma, tokens)
    assert len(fig.axes) == n_pairs + 3
    heat = [ax for ax in fig.axes if ax.images and ax.get_title().startswith("Uncertainty")][0]
    assert [t.get_text() for t in heat.get_xticklabels()] == ["A", "b", "c", "d", "."]
    assert heat.images[0].get_array().shape == (6, 5)  # PCs as rows, tokens as columns
    assert type(heat.images[0].norm).__name__ == "LogNorm"
    with pytest.raises(ValueError, match="> 0"):
        plot_drift_pairs_and_uncertainty(fields, -sigma, tokens)
    with pytest.raises(ValueError, match="tokens has 2"):
        plot_drift_pairs_and_uncertainty(fields, sigma, tokens[:2])
    with pytest.raises(ValueError, match="empty"):
        plot_drift_pairs_and_uncertainty([], sigma, tokens)


# ----------------------------------------------------------------------------- figures 6-7


def test_fig6_importance_and_attention():
    L = 5
    att = np.tril(np.full((L, L), 0.1))
    norms = np.array([1.0, 3.0, 2.0, 0.5, 2.5])
    fig = plot_importance_attention(["ĠThe", "Ġcat", "Ġsat", "Ġon", "."], norms, att)
    assert len(fig.axes) == 3
    bars = fig.axes[0].patches
    np.testing.assert_allclose([b.get_height() for b in bars], norms)
    dark = [b.get_facecolor()[3] == 1.0 for b in bars]  # the three largest norms are opaque
    assert dark == [False, True, True, False, True]
    shown = fig.axes[1].images[0].get_array()
    assert shown.mask[0, 1] and not shown.mask[1, 0]  # causal zeros left blank
    with pytest.raises(ValueError, match="attention must have shape"):
        plot_importance_attention(["a"] * L, norms, att[:3, :3])
    with pytest.raises(ValueError, match="summing to at most 1"):
        plot_importance_attention(["a"] * L, norms, att * 10)
    with pytest.raises(ValueError, match="norms must have shape"):
        plot_importance_attention(["a"] * L, norms[:2], att)


def test_fig7_process_diagram():
    fig = plot_answer_process(process())
    assert len(fig.axes) == 2
    diagram = fig.axes[0]
    texts = [t.get_text() for t in diagram.texts]
    assert any("the ✓" in t for t in texts)  # step 1 decodes to the expected "The"
    assert "“capital”" in texts and "“of”" in texts
    assert not diagram.axison
    with pytest.raises(ValueError, match="n_decoded"):
        plot_answer_process(process(), n_decoded=0)
    with pytest.raises(ValueError, match="two different coordinates"):
        plot_answer_process(process(), coords=(0, 9))
