"""Stage 1: text -> LLM states -> trajectory store (notebooks 01, 02).

- :mod:`pairs`: prompt/response pairs from ShareGPT, splits by conversation;
- :mod:`llm`: loading the offline LLMs and their caches; teacher forcing, attention,
  sampling with per-step states; token display and nearest-token decoding;
- :mod:`store`: the on-disk trajectory store (its docstring is the contract);
- :mod:`extract`: the two builders, ``extract_pairs`` and ``sample_to_store``.
"""
