"""Small models that follow the model contract, shared by the theory tests (float64).

They are built here (no NeuralSDE import) so the theory checks are tested against the
contract of :class:`sde_utils.models.base.SDEModel`, not against one implementation.
"""

import torch
from torch import nn

from sde_utils.models.base import SDEModel

F64 = torch.float64
ACT = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "softplus": nn.Softplus}


class ToyLinear(SDEModel):
    """The LinearSDE contract: drift x A^T + b, constant sigma property."""

    def __init__(self, A, b, sigma):
        super().__init__()
        self.state_dim = len(b)
        self.A = nn.Parameter(torch.as_tensor(A, dtype=torch.float64))
        self.b = nn.Parameter(torch.as_tensor(b, dtype=torch.float64))
        self.log_sigma = nn.Parameter(torch.as_tensor(sigma, dtype=torch.float64).log())

    @property
    def sigma(self):
        return self.log_sigma.exp()

    def drift(self, x, t):
        return x @ self.A.T + self.b

    def diffusion(self, x, t):
        return self.sigma.expand(x.shape[0], -1)


def mlp(n_in, hidden, n_out, depth, act):
    layers = [nn.Linear(n_in, hidden), ACT[act]()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), ACT[act]()]
    return nn.Sequential(*layers, nn.Linear(hidden, n_out))


class ToyNeuralSDE(SDEModel):
    """The NeuralSDE contract: drift_net / diffusion_net on [x, time features]."""

    def __init__(self, d, hidden=16, depth=2, act="tanh", sigma_floor=1e-3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.state_dim, self.n_time_features, self.sigma_floor = d, 2, sigma_floor
        self.drift_net = mlp(d + 2, hidden, d, depth, act)
        self.diffusion_net = mlp(d + 2, hidden, d, depth, act)
        self.double()

    def time_features(self, t):
        t = t.reshape(-1, 1)
        return torch.cat([t / 10.0, torch.sin(t)], dim=-1)

    def _z(self, x, t):
        return torch.cat([x, self.time_features(t).to(x.dtype)], dim=-1)

    def drift(self, x, t):
        return self.drift_net(self._z(x, t))

    def diffusion(self, x, t):
        return nn.functional.softplus(self.diffusion_net(self._z(x, t))) + self.sigma_floor


class SineModel(SDEModel):
    """No recognised structure: mu = sin(x), sigma = 0.5 + 0.1 tanh(x)."""

    state_dim = 2

    def drift(self, x, t):
        return torch.sin(x)

    def diffusion(self, x, t):
        return 0.5 + 0.1 * torch.tanh(x)


def linear_sde(A, b, sigma):
    """A float64 :class:`~sde_utils.models.baselines.LinearSDE` with the given A, b, sigma
    (the model the notebooks fit as ``linear_ou``)."""
    from sde_utils.models.baselines import LinearSDE

    model = LinearSDE(len(b)).double()
    model.A.copy_(torch.as_tensor(A, dtype=torch.float64))
    model.b.copy_(torch.as_tensor(b, dtype=torch.float64))
    model.sigma_diag.copy_(torch.as_tensor(sigma, dtype=torch.float64))
    return model


A_FULL = [[-1.0, 2.0], [0.0, -3.0]]  # Hurwitz (eigenvalues -1, -3)
G_FULL = [[0.3, 0.1], [0.0, 0.3]]


class FullNoiseOU(SDEModel):
    """dX = A X dt + G dW with a full constant G: ``diffusion`` returns ``(B, d, d)``."""

    state_dim = 2

    def __init__(self, A=A_FULL, G=G_FULL):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=F64))
        self.register_buffer("G", torch.as_tensor(G, dtype=F64))

    def drift(self, x, t):
        return x @ self.A.T

    def diffusion(self, x, t):
        return self.G.expand(x.shape[0], -1, -1)


class SequentialDrift(SDEModel):
    """A researcher's own model: drift = a plain nn.Sequential on x (no time input),
    constant diagonal sigma kept as a plain tensor attribute (not a buffer)."""

    state_dim = 2

    def __init__(self, net, sigma=(0.5, 0.5), dtype=F64):
        super().__init__()
        self.net = net.to(dtype)
        self.noise = torch.as_tensor(sigma, dtype=dtype)  # plain attribute, not a buffer

    def drift(self, x, t):
        return self.net(x)

    def diffusion(self, x, t):
        return self.noise.expand(x.shape[0], -1)
