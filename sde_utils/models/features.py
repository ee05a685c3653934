"""Feature map from model space (LLM embeddings, ``d`` wide) to the SDE's state space.

``z = ((x - mean) / scale - pca_mean) @ components.T``: per-dimension standardisation
(optional) followed by a PCA projection onto the top ``pca_dim`` principal axes, both
fitted with scikit-learn on the rows the caller passes to :meth:`FeatureMap.fit`: the
training split only, so that nothing about validation or test conversations leaks into
the state space. ``inverse_transform`` maps back to model space (exact for
``pca_dim=None``; the orthogonal projection onto the principal subspace otherwise).

All arithmetic is float64; outputs are float32 for float32 input and float64 otherwise,
numpy in -> numpy out, torch in -> torch out (same device). The fitted state is plain
arrays saved as ``.npz`` (no pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from sde_utils.checks import check_bool, check_fraction, check_int, check_seed
from sde_utils.io import atomic_write

# The file-format tag names the format, not the module: it is the tag of the files written
# before the package moved to sde_utils/models/ (kept so saved fits still load); files
# written between the move and this fix carry the second tag and load too.
_FORMAT = "sde_utils.features.FeatureMap/1"
_FORMATS_READ = (_FORMAT, "sde_utils.models.features.FeatureMap/1")


def _as_float64(name: str, X, width: int | None = None) -> tuple[np.ndarray, object]:
    """``X`` as a float64 (N, width) array, and a function giving results back in X's kind."""
    if isinstance(X, torch.Tensor):
        out_dtype = torch.float32 if X.dtype == torch.float32 else torch.float64
        device = X.device
        arr = X.detach().to("cpu", torch.float64).numpy()

        def back(Y: np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(Y)).to(device=device, dtype=out_dtype)
    else:
        arr = np.asarray(X)
        out_np = np.float32 if arr.dtype == np.float32 else np.float64
        arr = arr.astype(np.float64, copy=False)

        def back(Y: np.ndarray):
            return Y.astype(out_np, copy=False)

    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, d), got shape {arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise ValueError(f"{name} has {arr.shape[1]} columns, expected {width} (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr, back


class FeatureMap:
    """Standardise + PCA, fitted on training rows, invertible.

    Args:
        pca_dim: number of principal components kept (``k``), or ``None`` for no reduction
            (standardisation only, ``k = d``, inverse exact). Must be >= 1 and, at fit time,
            <= ``min(N_train, d)``.
        standardize: divide each dimension by its training standard deviation (constant
            dimensions keep scale 1) before the PCA; otherwise only centre.
        seed: recorded and passed to scikit-learn as ``random_state``; the solvers used
            (``covariance_eigh`` when N >= d, else ``full``) are exact and deterministic.

    Fitted attributes (float64 numpy): ``mean_``, ``scale_`` (d,); ``components_`` (k, d),
    orthonormal rows, or ``None`` for ``pca_dim=None``; ``pca_mean_`` (d,) (the PCA's centre
    in standardised units, ~0); ``explained_variance_ratio_`` (k,): the share of the total
    standardised variance on each kept axis (for ``pca_dim=None``: every principal axis,
    for reference, though no projection is applied); ``full_explained_variance_ratio_``:
    the whole spectrum, ``min(N, d)`` values, from which :meth:`n_components_for` reads.
    """

    def __init__(self, pca_dim: int | None = 32, standardize: bool = True, seed: int = 0):
        # pca_dim=None (no reduction) or an int >= 1
        self.pca_dim = None if pca_dim is None else check_int("pca_dim", pca_dim, minimum=1)
        self.standardize = check_bool("standardize", standardize)
        self.seed = check_seed(seed)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.pca_mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self.explained_variance_ratio_: np.ndarray | None = None
        self.full_explained_variance_ratio_: np.ndarray | None = None
        self.n_train_: int | None = None

    # ------------------------------------------------------------------ properties
    @property
    def is_fitted(self) -> bool:
        return self.mean_ is not None

    @property
    def input_dim(self) -> int:
        """``d``, the model-space width."""
        self._require_fitted()
        return int(self.mean_.shape[0])

    @property
    def output_dim(self) -> int:
        """``k``, the state-space width (``d`` for ``pca_dim=None``)."""
        self._require_fitted()
        return self.input_dim if self.components_ is None else int(self.components_.shape[0])

    def config(self) -> dict:
        """The constructor arguments."""
        return {"pca_dim": self.pca_dim, "standardize": self.standardize, "seed": self.seed}

    def _require_fitted(self) -> None:
        if self.mean_ is None:
            raise RuntimeError("FeatureMap is not fitted: call fit(X_train) first")

    # ------------------------------------------------------------------ fitting
    def fit(self, X_train) -> FeatureMap:
        """Fit on ``X_train: (N, d)`` (training rows only). Returns ``self``."""
        X, _ = _as_float64("X_train", X_train)
        n, d = X.shape
        if n < 2:
            raise ValueError(f"X_train needs at least 2 rows to fit, got {n}")
        if self.pca_dim is not None and self.pca_dim > min(n, d):
            raise ValueError(
                f"pca_dim={self.pca_dim} exceeds what X_train of shape {X.shape} supports: "
                f"at most min(N_train={n}, d={d}) = {min(n, d)}"
            )
        scaler = StandardScaler(with_std=self.standardize).fit(X)
        Xs = scaler.transform(X)
        solver = "covariance_eigh" if n >= d else "full"
        pca = PCA(n_components=None, svd_solver=solver, random_state=self.seed).fit(Xs)
        self.mean_ = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale_ = (
            np.asarray(scaler.scale_, dtype=np.float64) if self.standardize else np.ones(d)
        )
        self.pca_mean_ = np.asarray(pca.mean_, dtype=np.float64)
        ratio = np.asarray(pca.explained_variance_ratio_, dtype=np.float64)
        self.full_explained_variance_ratio_ = ratio
        if self.pca_dim is None:
            self.components_ = None
            self.explained_variance_ratio_ = ratio.copy()
        else:  # the top-k axes of the full, deterministic decomposition
            self.components_ = np.asarray(pca.components_[: self.pca_dim], dtype=np.float64)
            self.explained_variance_ratio_ = ratio[: self.pca_dim].copy()
        self.n_train_ = int(n)
        return self

    def n_components_for(self, fractions: Iterable[float] = (0.5, 0.9, 0.99)) -> dict:
        """``{fraction: smallest k whose top-k axes explain >= fraction of the variance}``.

        Read from the full spectrum of the (standardised) training data, whatever
        ``pca_dim`` is kept; fractions must lie in (0, 1].
        """
        self._require_fitted()
        cumulative = np.cumsum(self.full_explained_variance_ratio_)
        out = {}
        for f in fractions:
            f = check_fraction("fractions", f, open_high=False)
            # tolerance: the cumulative sum of float64 ratios may end at 1 - 1e-16
            k = int(np.searchsorted(cumulative, f - 1e-12, side="left")) + 1
            out[f] = min(k, cumulative.size)
        return out

    # ------------------------------------------------------------------ mapping
    def transform(self, X):
        """Model space ``(N, d)`` -> state space ``(N, k)``."""
        self._require_fitted()
        X, back = _as_float64("X", X, self.input_dim)
        Z = (X - self.mean_) / self.scale_ - self.pca_mean_
        if self.components_ is not None:
            Z = Z @ self.components_.T
        return back(Z)

    def inverse_transform(self, Z):
        """State space ``(N, k)`` -> model space ``(N, d)``."""
        self._require_fitted()
        Z, back = _as_float64("Z", Z, self.output_dim)
        if self.components_ is not None:
            Z = Z @ self.components_
        return back((Z + self.pca_mean_) * self.scale_ + self.mean_)

    def transform_transitions(self, x0, x1):
        """Map both ends of transitions ``(N, d)`` -> ``(N, k)``; returns ``(z0, z1)``."""
        return self.transform(x0), self.transform(x1)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted map to ``path`` (``.npz``, no pickle; written atomically)."""
        self._require_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            **self.config(),
            "n_train": self.n_train_,
            "has_components": self.components_ is not None,
        }
        arrays = {
            "meta": np.array(json.dumps(meta)),
            "mean": self.mean_,
            "scale": self.scale_,
            "pca_mean": self.pca_mean_,
            "components": self.components_ if self.components_ is not None else np.zeros((0, 0)),
            "explained_variance_ratio": self.explained_variance_ratio_,
            "full_explained_variance_ratio": self.full_explained_variance_ratio_,
        }
        return atomic_write(path, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureMap:
        """Read a map written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") not in _FORMATS_READ:
                raise ValueError(
                    f"{path} is not a saved FeatureMap (format {meta.get('format')!r})"
                )
            fm = cls(pca_dim=meta["pca_dim"], standardize=meta["standardize"], seed=meta["seed"])
            fm.mean_ = data["mean"].astype(np.float64)
            fm.scale_ = data["scale"].astype(np.float64)
            fm.pca_mean_ = data["pca_mean"].astype(np.float64)
            fm.components_ = (
                data["components"].astype(np.float64) if meta["has_components"] else None
            )
            fm.explained_variance_ratio_ = data["explained_variance_ratio"].astype(np.float64)
            fm.full_explained_variance_ratio_ = data["full_explained_variance_ratio"].astype(
                np.float64
            )
            fm.n_train_ = meta["n_train"]
        return fm

    def __repr__(self) -> str:
        state = f", d={self.input_dim}, k={self.output_dim}" if self.is_fitted else ", unfitted"
        return f"FeatureMap(pca_dim={self.pca_dim}, standardize={self.standardize}{state})"


__all__ = ["FeatureMap"]
