"""Theory checks of the paper's §3 and Appendix A on any SDEModel.

- :mod:`.lipschitz`: Lipschitz brackets (certified upper, searched lower) and linear growth;
- :mod:`.lyapunov`: equilibria, Lyapunov matrices, the generator LV, LV <= -c V + d;
- :mod:`.moments`: moment ODEs, the exact Euler chain, Monte Carlo moment checks;
- :mod:`.picard`: Picard iteration on one Brownian path and its pathwise bounds.

Every function returns floats, numpy arrays and dicts of them; :func:`to_jsonable`
turns any result into JSON-ready Python objects.
"""

from sde_utils.io import to_jsonable
from sde_utils.theory.lipschitz import (
    EXACT_MAX_DIM,
    GELU_DERIVATIVE_MAX,
    SILU_DERIVATIVE_MAX,
    activation_derivative_range,
    chain_lipschitz_bounds,
    linear_growth,
    lipschitz_bracket,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
)
from sde_utils.theory.lyapunov import (
    expected_V,
    find_equilibria,
    fit_lv_bound,
    generator_LV,
    lyapunov_V,
    solve_lyapunov,
    stability_at,
    ultimate_bound,
)
from sde_utils.theory.moments import (
    along_paths,
    euler_chain_moments,
    linear_moment_odes,
    mc_mean_cov,
    moment_recursion_check,
    second_moment_terms,
)
from sde_utils.theory.picard import (
    elementary_symmetric_log,
    euler_maruyama_path,
    picard_convergence,
    picard_iterates,
)

__all__ = [
    "to_jsonable",
    # lipschitz
    "EXACT_MAX_DIM",
    "GELU_DERIVATIVE_MAX",
    "SILU_DERIVATIVE_MAX",
    "activation_derivative_range",
    "chain_lipschitz_bounds",
    "lipschitz_upper_bound",
    "lipschitz_lower_bound",
    "lipschitz_bracket",
    "linear_growth",
    # lyapunov
    "find_equilibria",
    "solve_lyapunov",
    "stability_at",
    "lyapunov_V",
    "expected_V",
    "generator_LV",
    "fit_lv_bound",
    "ultimate_bound",
    # moments
    "linear_moment_odes",
    "euler_chain_moments",
    "second_moment_terms",
    "moment_recursion_check",
    "mc_mean_cov",
    "along_paths",
    # picard
    "euler_maruyama_path",
    "picard_iterates",
    "elementary_symmetric_log",
    "picard_convergence",
]
