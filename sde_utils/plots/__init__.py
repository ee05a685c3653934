"""Every figure of every notebook, one module per notebook family.

- :mod:`~sde_utils.plots.style`: the style, ``show`` (save and show inline) and ``savefig``;
- :mod:`~sde_utils.plots.training`: notebook 03 (losses, held-out paths);
- :mod:`~sde_utils.plots.theory`: notebooks 04-06 (the theory checks);
- :mod:`~sde_utils.plots.paper`: figures 2-6 of the paper, :mod:`~sde_utils.plots.app_b`:
  figure 7 (the App. B example), :mod:`~sde_utils.plots.labels`: token labels,
  :mod:`~sde_utils.plots.rollouts`: rollouts read back as text and App. B ranks (notebook 07);
- :mod:`~sde_utils.plots.uncertainty`: notebook 08 (does sigma track uncertainty);
- :mod:`~sde_utils.plots.data`: notebooks 01-02 (the extracted and sampled states);
- :mod:`~sde_utils.plots.layers`: notebook 09 (the layer sweep against depth).

Notebooks call ``plots.<module>.<function>`` and hand the figure to ``plots.show``.
"""

from sde_utils.plots import (
    app_b,
    data,
    labels,
    layers,
    paper,
    rollouts,
    style,
    template,
    theory,
    training,
    uncertainty,
)
from sde_utils.plots.style import ACTUAL, PREDICTED, savefig, show, use_style

__all__ = [
    "app_b",
    "labels",
    "layers",
    "template",
    "data",
    "paper",
    "rollouts",
    "style",
    "theory",
    "training",
    "uncertainty",
    "ACTUAL",
    "PREDICTED",
    "savefig",
    "show",
    "use_style",
]
