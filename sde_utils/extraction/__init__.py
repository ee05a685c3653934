"""Stage 1: text -> LLM states -> trajectory store (notebooks 01, 02, 09).

- :mod:`sources`: where pairs come from (ShareGPT, HelpSteer, JSON lines);
- :mod:`pairs`: filtering and sampling the pairs, splits by conversation;
- :mod:`tokens`: chat-template encoding, token display, nearest-token decoding;
- :mod:`llm`: loading the offline LLMs and the checked caches of the packaged ones;
- :mod:`gemma`: Gemma 3 270M, the second packaged LLM: its GGUF and its prompt format;
- :mod:`states`: embedding kinds, teacher-forced states, attention maps;
- :mod:`layers`: every depth from one forward pass, one store per kind (the layer sweep);
- :mod:`sampling`: the LLM's own answers with per-step states, entropy and log-prob;
- :mod:`store`: the on-disk trajectory store (its docstring is the contract) and its
  reader; :mod:`store_inputs` checks what goes in, :mod:`store_build` writes it
  (one :mod:`store_chunks` file per chunk);
- :mod:`sharding`: a store built by the ranks of a ``torch.distributed`` group, each a
  shard of the chunks; :mod:`distributed`: the ``torchrun`` command line for a profile;
- :mod:`extract`: the two builders, ``extract_pairs`` and ``sample_to_store``.
"""
