"""The device policy: where models train and simulate.

``"auto"`` (or None) is CUDA when torch sees a GPU, else the CPU; ``"cpu"``, ``"cuda"``,
``"cuda:N"`` (and ``"mps"``) name one. A named accelerator that is not there is a
ValueError saying so, never a silent fall-back to the CPU: a profile that asks for a GPU
does not quietly run for hours on a CPU. Where the numbers can differ: a GPU's kernels
round differently (and its generators draw other numbers) than the CPU's, so a fit made
on CUDA agrees with the CPU's within float tolerances, not bit for bit; the seeds and
batches are the same on both (batches are drawn by a CPU generator).
"""

from __future__ import annotations

from typing import Any

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(device: Any = "auto") -> torch.device:
    """``device`` (``"auto"``, None, a name or a ``torch.device``) -> a ``torch.device``
    that exists on this machine; ``"cuda"`` is the current CUDA device."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"device must be a str like {DEVICE_CHOICES} or a torch.device, got {device!r} "
            f"({type(device).__name__})"
        )
    try:
        out = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except RuntimeError as err:
        raise ValueError(
            f"device must be one of {DEVICE_CHOICES}, got {device!r} ({err})"
        ) from None
    if out.type == "cpu":
        return out
    if out.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} was requested but torch sees no CUDA GPU (torch "
                f"{torch.__version__}, CUDA build {torch.version.cuda}); use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if out.index is not None and out.index >= count:
            raise ValueError(f"device {device!r}: only {count} CUDA device(s) (cuda:0..)")
        return out
    if out.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} was requested but MPS is not available")
        return out
    raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")


def cuda_skip_reason() -> str | None:
    """Why a GPU check cannot run here (None: CUDA is available)."""
    if torch.cuda.is_available():
        return None
    return (
        f"needs a CUDA GPU; torch {torch.__version__} sees none (CUDA build {torch.version.cuda})"
    )


__all__ = ["DEVICE_CHOICES", "resolve_device", "cuda_skip_reason"]
