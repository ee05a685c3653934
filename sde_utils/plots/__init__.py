"""Every figure of every notebook, one module per notebook family.

- :mod:`~sde_utils.plots.style`: the style, ``show`` (save and show inline) and ``savefig``;
- :mod:`~sde_utils.plots.training`: notebook 03 (losses, held-out paths);
- :mod:`~sde_utils.plots.paper`: figures 2-7 of the paper (notebook 07).

Notebooks call ``plots.<module>.<function>`` and hand the figure to ``plots.show``.
"""

from sde_utils.plots import paper, style, training
from sde_utils.plots.style import ACTUAL, PREDICTED, savefig, show, use_style

__all__ = ["paper", "style", "training", "ACTUAL", "PREDICTED", "savefig", "show", "use_style"]
