"""sde_utils: an SDE lens on LLM text generation (arXiv 2408.11863)."""

__version__ = "0.1.0"
