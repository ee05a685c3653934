"""Stage 5: running the notebooks and reporting; imports no science module.

- :mod:`run`: the papermill runner (``python -m sde_utils``); :mod:`profiles`: notebooks,
  profiles and their parameters, checked before anything runs;
- :mod:`results`: each notebook's metrics file; :mod:`artifacts`: which folder a notebook
  produced last; :mod:`compare`: did a change move any recorded number;
- :mod:`report` (with :mod:`findings`, :mod:`render`, :mod:`export`, :mod:`style`):
  ``reports/index.html``; :mod:`nbcheck`: source notebooks carry no outputs.
"""
