"""The paper's figure captions: which figure is saved under which file stem.

Pure data, shared by the notebook that draws the figures (07, through
:mod:`sde_utils.analysis.paper_figures`) and the report page that shows them
(:mod:`sde_utils.pipeline.report`), so the report imports no science module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureSpec:
    """One paper figure: its number, the file stem it is saved under and its caption."""

    number: int
    stem: str
    title: str
    caption: str  # the paper's caption, verbatim


PAPER_FIGURES: dict[str, FigureSpec] = {
    spec.stem: spec
    for spec in (
        FigureSpec(
            1,
            "fig1-losses",
            "Training and validation losses",
            "Figure 1: Training and Validation Losses over Epochs for the SDE Model. The top "
            "plot shows the total loss, the middle plot shows the drift loss, and the bottom "
            "plot shows the diffusion loss. The model shows a consistent decrease in losses "
            "over the epochs, indicating improved learning and stability.",
        ),
        FigureSpec(
            2,
            "fig2-actual-vs-predicted",
            "Actual vs predicted trajectories",
            "Figure 2: Actual vs Predicted Trajectories. The left plot shows the actual "
            "trajectory of the text generation, while the right plot presents the predicted "
            "trajectory. The comparison between these trajectories highlights the alignment "
            "and discrepancies in the model's predictions.",
        ),
        FigureSpec(
            3,
            "fig3-trajectories-words",
            "Trajectories with words",
            "Figure 3: Text Generation Trajectories with Words. This plot visualizes the "
            "actual and predicted word trajectories during the text generation process. Each "
            "point represents a word in the sequence, showing the semantic movement in the "
            "PCA-reduced space. The alignment between the red (predicted) and blue (actual) "
            "paths illustrates the model's accuracy in capturing the semantic evolution.",
        ),
        FigureSpec(
            4,
            "fig4-drift-diffusion",
            "Drift field and diffusion heatmap",
            "Figure 4: (Left) SDE Vector Field illustrating the drift magnitude during the "
            "text generation process. (Right) Diffusion Magnitude Heatmap showing the "
            "diffusion effects across different token positions.",
        ),
        FigureSpec(
            5,
            "fig5-drift-pairs-uncertainty",
            "Drift across PC pairs and uncertainty heatmap",
            "Figure 5: (Left) Refined SDE Vector Field highlighting drift magnitude across "
            "various components. (Right) Uncertainty Heatmap demonstrating the uncertainty "
            "across different tokens during generation.",
        ),
        FigureSpec(
            6,
            "fig6-importance-attention",
            "Word importance and attention weights",
            "Figure 6: Analysis of Word Importance and Attention Weights in Text Generation. "
            "(a) Word Importance Based on Embedding Magnitude. (b) Attention Weights Heatmap.",
        ),
        FigureSpec(
            7,
            "fig7-capital-of-france",
            "The App. B example: the capital of France",
            "Figure 7: Illustration of the SDE-based Process for Answer Generation in LLMs. "
            "This figure demonstrates the sequential steps, starting from question "
            "embeddings, calculating the initial state, and using the SDE model to generate "
            "the final answer embeddings.",
        ),
    )
}
"""File stem -> :class:`FigureSpec`, in figure order; captions copied from the paper."""


__all__ = ["FigureSpec", "PAPER_FIGURES"]


# What each notebook's own figures show, for the report (the paper figures are above).
NOTEBOOK_FIGURES: dict[str, str] = {
    "01-lengths": "Response lengths in tokens of the teacher-forced ShareGPT responses; the dashed "
    "line marks the median.",
    "01-norms": "Norms of the token states: their distribution, and the mean by position in the "
    "response.",
    "01-pca-variance": "Cumulative variance kept by the principal components of the states: "
    "how much a d-dimensional SDE can see.",
    "01-trajectory-pca": "A few responses as trajectories in the first two principal components.",
    "02-entropy-by-position": "The LLM's next-token entropy along its own answers, per sampling "
    "temperature.",
    "02-spread": "How far apart the K answers to one prompt drift, per temperature.",
    "03-losses": "Training and validation losses of the neural SDE (total, drift, diffusion) per "
    "epoch; the dotted line marks the epoch kept.",
    "03-paths": "Held-out trajectories (blue) against the model's drift path and a band of "
    "simulated paths (red), started at the real first state.",
    "03-losses-multistep": "The multi-step SDE's fine-tuning from the one-step fit: one-step "
    "drift loss, k-step NLL and their total (with the contraction penalty) per epoch.",
    "03-losses-latent": "The latent SDE's training from the one-step fit: the negative ELBO "
    "per dimension and step, its observation NLL and its KL between posterior and prior, per "
    "epoch.",
    "03-latent-noise": "The latent SDE at three observation noises (dashed path) beside the "
    "neural SDE and the linear drifts: 16-step energy distance against the one-step NLL from "
    "the observed state (left) and against the NLL of whole held-out windows, the latent SDE's "
    "by its ELBO (right); 95% conversation-bootstrap intervals, lower left is better.",
    "03-jacobian-spectra": "Spectral radius and norm of each model's one-step map x -> x + "
    "mu dt at held-out states (boxes: quartiles, whiskers 5-95%); above the dotted line 1 "
    "perturbations grow.",
    "04-lipschitz-brackets": "Lipschitz constants in x per model: certified upper bound (▼) and "
    "searched lower bound (▲); the true constant lies between.",
    "04-linear-growth": "Linear growth: (‖μ‖² + ‖σ‖²) / (1 + ‖x‖²) against the radius, and the "
    "certified constant C.",
    "05-eigenvalues": "Eigenvalues of the drift's Jacobian at each model's equilibrium x* "
    "(all in the left half-plane: Hurwitz).",
    "05-lv": "The paper's condition LV ≤ 0: LV against the distance to x*, and its histogram "
    "over held-out states.",
    "05-ultimate-bound": "E V(t) against the bound V(0) e^(−ct) + d/c (1 − e^(−ct)), in "
    "continuous time (top) and per token (bottom).",
    "06-linear-moments": "Linear model: the moment ODEs against Monte Carlo, in continuous time "
    "and one step per token.",
    "06-moment-recursion": "Neural SDE, one coordinate: the n-th moment equation against "
    "simulation.",
    "06-picard": "Picard iteration on one Brownian path: distance between iterates against the "
    "theoretical bound, per model.",
    "07-app-b-ranks": "App. B: rank of the expected word at each of the six steps from Q_init, "
    "for the model trained with question -> answer transitions, its shuffled-pairs control and "
    "the response-only model (line: drift path; band: sampled paths), against the PCA round trip.",
    "07-rollouts-text": "Rollouts from held-out starts decoded to the nearest tokens and scored: "
    "the LLM's log-probability per token, distinct-1/2 and next-token accuracy, per model, "
    "against the real text, its PCA round trip and its shuffled tokens (95% "
    "conversation-bootstrap intervals).",
    "08-sigma-vs-entropy": "σ² of the SDE fitted on the LLM's own samples, on prompts it never "
    "saw, against the next-token entropy and surprisal, per temperature, and the model-free "
    "squared step: bin means with 95% conversation-bootstrap bands.",
    "08-sigma-by-temperature": "σ² and realised steps against the sampling temperature, with "
    "slopes and 95% intervals.",
    "08-first-step-kl": "First generated step: KL from the true draws to each model's Gaussian "
    "(0: as good as the true model).",
    "08-error-by-position-complexity": "Prediction error by position in the response and by "
    "text complexity.",
    "09-layer-sweep": "The SDE lens along the depth of SmolLM2-135M and Gemma 3 270M (0: input "
    "embedding, 1: final state): the neural SDE's held-out NLL and 16-step energy gaps to the "
    "best baseline (below 0: better; rings: it beats every baseline on both), its drift R², "
    "energy distances, coverage and the variance the PCA keeps, with 95% conversation-bootstrap "
    "intervals.",
}
