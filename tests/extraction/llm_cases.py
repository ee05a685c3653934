"""Inputs and a reference forward pass shared by the tests of the LLM stage (``lm`` is the
session fixture of ``conftest.py``).

Tolerances, once: the same float32 computation run through different kernel shapes
(a batch of one vs a padded batch, a KV-cached single-token step vs a full-sequence pass)
rounds differently. Llama-style residual streams carry a few "massive" activations (|x| up
to a few hundred in middle layers), so differences are bounded relative to the largest
magnitude of the state compared: ``REL`` = 2e-5 of it (~170 float32 ulps of that value,
room for rounding accumulated over up to 30 blocks). Identical computations must agree to
1e-5 absolute (in practice they agree exactly).
"""

from __future__ import annotations

import torch

from sde_utils.extraction.states import encode_pair

REL = 2e-5  # relative (to max |state|) tolerance for differently-shaped kernels, see above

PROMPTS = [
    "Tell me a joke.",
    "Explain gravity to a child in two short sentences, please.",
    "Hi",
    "List three prime numbers.",
    "What does a compiler do? Keep it brief.",
]
RESPONSES = [
    "Why did the chicken cross the road? To get to the other side!",
    "Gravity pulls things down.\nThat's why apples fall from trees.",
    "Hello! How can I help you today?",
    "2, 3 and 5.",
    "A compiler translates source code written by people into machine code that a "
    "processor can run, checking it for errors along the way.",
]


def direct_forward(model, tokenizer, prompt, token_ids):
    """One unbatched forward pass of chat(prompt) + token_ids through the full causal LM."""
    prompt_ids = encode_pair(tokenizer, prompt, "")[0]
    ids = torch.tensor([prompt_ids + list(token_ids)])
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
    return len(prompt_ids), out
