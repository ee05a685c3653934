"""Stage 5: running the notebooks and reporting; imports no science module.

- :mod:`run`: the papermill runner (``python -m sde_utils``);
- :mod:`results`: each notebook's metrics file; :mod:`artifacts`: which folder a notebook
  produced last; :mod:`report`: ``reports/index.html``; :mod:`nbcheck`: stripped notebooks.
"""
