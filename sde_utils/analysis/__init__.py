"""Stage 4: statistics with intervals and the studies built on them (notebooks 07, 08).

- :mod:`stats`: cluster bootstrap, rank correlations, Gaussian KL, verdicts;
- :mod:`uncertainty`: does sigma track the LLM's uncertainty (notebook 08);
- :mod:`paper_figures`: the numbers behind the paper's figures 1-7 (notebook 07).
"""
