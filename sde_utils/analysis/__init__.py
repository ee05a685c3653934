"""Stage 4: statistics with intervals and the studies built on them (notebooks 07, 08).

Statistics:

- :mod:`stats`: the cluster bootstrap, OLS slopes and binned means with intervals;
- :mod:`rank_correlation`: Spearman and partial Spearman correlations with intervals;
- :mod:`gaussian`: Gaussian KL and samples against a model's Gaussian step;
- :mod:`intervals`: NaN-safe intervals that say why there is none;
- :mod:`verdicts`: a claim decided by its interval;
- :mod:`complexity`: text-complexity proxies.

Notebook 08 (does sigma track the LLM's uncertainty?): :mod:`transitions` (per-transition
quantities), :mod:`temperature`, :mod:`first_step`, :mod:`prediction_error`, and its steps
in :mod:`uncertainty_report` (sections 1-3) and :mod:`uncertainty_verdicts` (4-5).

Notebook 07 (the paper's figures): :mod:`paper_figures` (what is drawn),
:mod:`paper_findings` (the numbers and finding under each figure), :mod:`app_b` (figure 7).
The captions are in :mod:`sde_utils.captions`.

Notebook 09 (the layer sweep over two LLMs' depth): :mod:`layer_sweep`.
"""
