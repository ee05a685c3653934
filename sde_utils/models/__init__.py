"""Stage 2: SDE models of the trajectories and everything that fits or scores them (notebook 03).

- :mod:`base`: the ``SDEModel`` interface (Itô, diagonal noise), the model registry,
  ``model_dtype_device`` and ``drift_diffusion_at`` (a model evaluated at given states);
- :mod:`neural`: the neural SDE, its time features and MLP building blocks;
- :mod:`baselines`: random walk, linear (OU) and drift-only models, ``check_transitions``;
- :mod:`serialize`: ``save_model`` / ``load_model`` of any registered model;
- :mod:`features`: standardise + PCA between LLM states and model states;
- :mod:`losses`: the drift loss and the diffusion NLL of an Euler–Maruyama step;
- :mod:`train`: ``fit`` and its ``History``; :mod:`checkpoint`: resumable checkpoints;
- :mod:`multistep`: the neural SDE on a k-step objective (moment propagation through the
  Euler chain, contraction penalty) and the one-step Jacobian of any model;
- :mod:`latent`: the latent SDE (a neural-SDE prior, a context encoder and a guided
  posterior) and its ELBO objective;
- :mod:`finetune`: fitting the multi-step and latent SDEs from the one-step fit;
- :mod:`simulate`: Euler–Maruyama and torchsde on the token grid;
- :mod:`metrics`: held-out scores; :mod:`fits`: the whole model set on one store.

Dependencies run one way: ``base`` <- ``neural`` <- ``baselines`` <- ``serialize``,
``losses`` <- ``multistep`` <- ``latent``, ``losses`` <- ``train`` (with ``checkpoint``);
``simulate`` <- ``metrics``; ``finetune`` uses ``latent``, ``multistep`` and ``train``;
``fits`` uses them all.
"""
