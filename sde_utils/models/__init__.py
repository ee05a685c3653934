"""Stage 2: SDE models of the trajectories and everything that fits or scores them (notebook 03).

- :mod:`neural`: the ``SDEModel`` interface, the registry, the neural SDE, save/load;
- :mod:`baselines`: random walk, linear (OU) and drift-only models;
- :mod:`features`: standardise + PCA between LLM states and model states;
- :mod:`train`: losses and the training loop; :mod:`simulate`: Euler-Maruyama and torchsde;
- :mod:`metrics`: held-out scores; :mod:`fits`: the whole model set on one store.
"""
