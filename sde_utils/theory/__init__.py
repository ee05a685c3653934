"""Theory checks of the paper's §3 and Appendix A on any SDEModel.

- :mod:`.chain_bounds`: certified Lipschitz bounds of an MLP's Jacobian from its weights;
- :mod:`.lipschitz_upper`: certified upper Lipschitz bounds of any model (MLP, linear, constant);
- :mod:`.lipschitz_lower`: searched lower bounds and the bracket K_mu, K_sigma, K;
- :mod:`.growth`: certified and empirical linear-growth constants;
- :mod:`.lyapunov`: equilibria, Lyapunov matrices, the generator LV, LV <= -c V + d;
- :mod:`.moments`: moment ODEs, the exact Euler chain, Monte Carlo moment checks;
- :mod:`.picard`: Picard iteration on one Brownian path and its pathwise bounds;
- :mod:`.inputs`: the fit, its store and the held-out states notebooks 04-06 start from;
- :mod:`.report` and the ``*_summary`` modules: tables, verdicts and metrics of 04-06.

Every function returns floats, numpy arrays and dicts of them; :func:`to_jsonable`
turns any result into JSON-ready Python objects.
"""

from sde_utils.io import to_jsonable
from sde_utils.theory.chain_bounds import (
    GELU_DERIVATIVE_MAX,
    SILU_DERIVATIVE_MAX,
    activation_derivative_range,
    chain_lipschitz_bounds,
)
from sde_utils.theory.growth import growth_ratio, linear_growth
from sde_utils.theory.lipschitz_lower import EXACT_MAX_DIM, lipschitz_bracket, lipschitz_lower_bound
from sde_utils.theory.lipschitz_upper import certified_upper_bound, lipschitz_upper_bound
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
    # chain_bounds
    "GELU_DERIVATIVE_MAX",
    "SILU_DERIVATIVE_MAX",
    "activation_derivative_range",
    "chain_lipschitz_bounds",
    # lipschitz_upper, lipschitz_lower
    "certified_upper_bound",
    "lipschitz_upper_bound",
    "EXACT_MAX_DIM",
    "lipschitz_lower_bound",
    "lipschitz_bracket",
    # growth
    "linear_growth",
    "growth_ratio",
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
