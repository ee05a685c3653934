"""Small models that follow the model contract, shared by the theory tests (float64)."""

import torch
from torch import nn

from sde_utils.models.neural import SDEModel


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
