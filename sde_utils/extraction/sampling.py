"""The LLM answers prompts itself: sampling with the state, entropy and log-prob of every step.

The state recorded for a sampled token is the one :func:`teacher_forced_states` gives for
the same tokens (see :mod:`sde_utils.extraction.states` for the embedding kinds and the
state convention), so sampled and teacher-forced trajectories live in the same space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sde_utils.checks import check_int, check_real, check_seed
from sde_utils.config import torch_threads
from sde_utils.extraction.states import check_kind, decoder_layers, index_chunks, num_layers
from sde_utils.extraction.tokens import check_texts, encode_prompt, pad_id

__all__ = ["sample_trajectories"]


def _row_generator(seed: int, prompt_index: int, temperature: float, sample_index: int):
    """A CPU torch generator for one (prompt, temperature, sample) row, independent of
    batching (it draws one uniform number per step, whatever the device)."""
    key = [int(seed), int(prompt_index), int(sample_index), int(round(temperature * 1_000_000))]
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    gen = torch.Generator()
    gen.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return gen


def _eos_ids(model, tokenizer) -> list[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def sample_trajectories(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    k: int = 4,
    temperatures: Sequence[float] = (0.7, 1.0),
    max_new_tokens: int = 64,
    kind: str = "hidden",
    seed: int = 0,
    batch_size: int | None = None,
    stop_at_eos: bool = True,
    min_new_tokens: int = 0,
    prompt_offset: int = 0,
    progress: bool = False,
    cpu_threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Sample ``k`` answers per prompt at each temperature, recording every step.

    Returns one dict per (prompt, temperature, sample), ordered by prompt, then temperature
    (as given), then sample: ``prompt_index``, ``prompt``, ``temperature``,
    ``sample_index``, ``token_ids`` (list[int], length L), ``tokens`` (raw BPE strings),
    ``states`` (float32 (L, d)), ``entropy`` (float64 (L,), nats), ``logprob`` (float64
    (L,)), ``text`` (decoded, special tokens skipped).

    Step t samples ``y_t`` from ``p_t = softmax(logits_t / T)``; ``entropy[t]`` is the
    entropy of ``p_t`` and ``logprob[t] = log p_t(y_t)``. ``T = 0`` means greedy decoding
    (a point mass: entropy 0, logprob 0). ``states[t]`` is the ``kind`` state of ``y_t``:
    for ``"input"`` its embedding row; otherwise the state at ``y_t``'s position, computed
    when ``y_t`` is fed back (one extra forward step after the last token), i.e. exactly what
    :func:`teacher_forced_states` gives for these tokens. With ``stop_at_eos`` a row ends
    when it samples an end-of-sequence token, which is not included; otherwise every row
    has exactly ``max_new_tokens`` tokens.

    ``min_new_tokens``: end-of-sequence tokens are masked for the first steps (as in
    ``generate``), so no row is shorter; entropy and log-prob are those of the masked
    distribution actually sampled from. ``prompt_offset``: the index of ``prompts[0]``
    in a larger list, so sampling a list in chunks gives the same rows as one call.

    Sampling is by inverse CDF (float64 cumulative sum, one uniform number per step) from
    one generator per row seeded from ``(seed, prompt_index, sample_index, temperature)``,
    so a row does not depend on the other prompts; another ``batch_size`` changes only float
    rounding (padding, kernel shapes), which flips a draw only if it lands within rounding
    distance of a CDF boundary. The loop is KV-cached; rows are grouped by prompt length into batches of ``batch_size`` rows
    (default: ``k * len(temperatures)``, one prompt's rows), left-padded with matching
    attention mask and position ids; a prompt shared by several rows is run once and its
    cache copied; finished rows leave the batch.

    ``cpu_threads``: torch threads while sampling on the CPU (default 1, the project's
    thread policy, :func:`sde_utils.config.torch_threads`): the same parameters then give
    the same rows whatever the machine's core count or load. ``None`` keeps torch's setting.
    """
    prompts = check_texts("prompts", prompts)
    k = check_int("k", k, minimum=1)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    temps = [check_real(f"temperatures[{i}]", t, minimum=0) for i, t in enumerate(temperatures)]
    if not temps:
        raise ValueError(
            f"temperatures must be a non-empty list of finite numbers >= 0, got {temperatures!r}"
        )
    if len(set(temps)) != len(temps):
        raise ValueError(f"temperatures must be distinct, got {temperatures!r}")
    layer = check_kind(model, kind)
    batch_size = (
        check_int("batch_size", batch_size, minimum=1) if batch_size is not None else k * len(temps)
    )
    seed = check_seed(seed)
    min_new_tokens = check_int("min_new_tokens", min_new_tokens, minimum=0)
    prompt_offset = check_int("prompt_offset", prompt_offset, minimum=0)
    if cpu_threads is not None:
        cpu_threads = check_int("cpu_threads", cpu_threads, minimum=1)
    on_cpu = next(model.parameters()).device.type == "cpu"

    prompt_ids = [encode_prompt(tokenizer, p) for p in prompts]
    rows = [(p, ti, s) for p in range(len(prompts)) for ti in range(len(temps)) for s in range(k)]
    order = sorted(range(len(rows)), key=lambda r: (len(prompt_ids[rows[r][0]]), r))
    eos = _eos_ids(model, tokenizer) if stop_at_eos else []
    results: list[dict[str, Any] | None] = [None] * len(rows)
    n_batches = math.ceil(len(order) / batch_size)
    with torch.inference_mode(), torch_threads(cpu_threads if on_cpu else None):
        for chunk in tqdm(index_chunks(order, batch_size), total=n_batches, disable=not progress):
            batch_rows = [rows[r] for r in chunk]
            gens = [
                _row_generator(seed, prompt_offset + p, temps[ti], s) for p, ti, s in batch_rows
            ]
            outs = _sample_batch(
                model,
                [prompt_ids[p] for p, _, _ in batch_rows],
                torch.tensor([temps[ti] for _, ti, _ in batch_rows], dtype=torch.float32),
                gens,
                max_new_tokens=max_new_tokens,
                layer=layer,
                eos=eos,
                pad=pad_id(tokenizer),
                min_new_tokens=min_new_tokens,
            )
            for r, (ids, states, ent, lp) in zip(chunk, outs, strict=True):
                p, ti, s = rows[r]
                results[r] = {
                    "prompt_index": prompt_offset + p,
                    "prompt": prompts[p],
                    "temperature": temps[ti],
                    "sample_index": s,
                    "token_ids": ids,
                    "tokens": tokenizer.convert_ids_to_tokens(ids),
                    "states": states,
                    "entropy": ent,
                    "logprob": lp,
                    "text": tokenizer.decode(ids, skip_special_tokens=True),
                }
    return results  # type: ignore[return-value]


def _prefill(model, prompt_ids, pad):
    """Run each distinct prompt of the batch once, left-padded, and copy its KV cache to
    every row that shares it. Returns ``(cache, logits (rows, vocab) float32, mask
    (rows, width), next_pos (rows,), padded)``; ``padded`` says whether any prompt was
    padded (without padding no attention mask is passed)."""
    device = model.device
    base = model.base_model
    head = model.get_output_embeddings()
    n_rows = len(prompt_ids)
    uniq: dict[tuple[int, ...], int] = {}
    row_to_uniq = [uniq.setdefault(tuple(p), len(uniq)) for p in prompt_ids]
    width = max(len(p) for p in uniq)
    ids = torch.full((len(uniq), width), pad, dtype=torch.long)
    mask = torch.zeros((len(uniq), width), dtype=torch.long)
    for u, p in enumerate(uniq):
        ids[u, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[u, width - len(p) :] = 1
    padded = bool((mask == 0).any())
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = base(
        input_ids=ids.to(device),
        attention_mask=mask.to(device) if padded else None,
        position_ids=positions.to(device),
        use_cache=True,
    )
    cache = out.past_key_values
    last = out.last_hidden_state[:, -1]
    select = torch.tensor(row_to_uniq, dtype=torch.long, device=device)
    if len(uniq) != n_rows:
        cache.reorder_cache(select)
        last = last[select]
    logits = head(last).float()
    mask = mask.to(device)[select]
    next_pos = positions.to(device)[select, -1] + 1
    return cache, logits, mask, next_pos, padded


def _draw(logits, scale, greedy, active, gens, device):
    """One step's draw for the ``active`` rows: ``(token, entropy, logprob)`` per row.

    Inverse-CDF sampling from ``softmax(logits / T)`` with one uniform number per row from
    its own generator; greedy rows (``T = 0``) take the argmax with entropy and logprob 0.
    """
    # few full-vocabulary ops per step: each is a parallel region, and on a busy
    # machine every extra region costs a scheduler wait
    logp = torch.log_softmax(logits / scale[active, None], dim=-1)
    prob = logp.exp()
    ent = torch.special.entr(prob).sum(-1)
    # inverse-CDF sampling with one uniform number per row from its own generator
    cdf = prob.cumsum(-1, dtype=torch.float64)
    u = torch.tensor([float(torch.rand((), generator=gens[r])) for r in active.tolist()])
    target = (u.to(device=device, dtype=torch.float64) * cdf[:, -1])[:, None]
    tok = torch.searchsorted(cdf, target, right=True)[:, 0].clamp_(max=cdf.shape[-1] - 1)
    is_greedy = greedy[active]
    if bool(is_greedy.any()):
        tok = torch.where(is_greedy, logp.argmax(-1), tok)
    lp = logp.gather(-1, tok[:, None])[:, 0]
    ent = torch.where(is_greedy, torch.zeros_like(ent), ent)
    lp = torch.where(is_greedy, torch.zeros_like(lp), lp)
    return tok, ent, lp


def _per_row(rec_rows, rec_tok, rec_ent, rec_lp, rec_state, n_rows, d):
    """Regroup the per-step records by row, in step order: per row ``(token_ids, states
    (L, d) float32, entropy (L,) float64, logprob (L,) float64)``."""
    if not rec_rows:
        empty = ([], np.zeros((0, d), np.float32), np.zeros(0), np.zeros(0))
        return [empty for _ in range(n_rows)]
    all_rows = torch.cat(rec_rows).cpu()
    all_tok = torch.cat(rec_tok).cpu()
    all_ent = torch.cat(rec_ent).double().cpu()
    all_lp = torch.cat(rec_lp).double().cpu()
    all_state = torch.cat(rec_state).to(torch.float32).cpu()
    results = []
    for r in range(n_rows):
        sel = (all_rows == r).nonzero()[:, 0]  # in step order
        results.append(
            (
                all_tok[sel].tolist(),
                all_state[sel].numpy().copy(),
                all_ent[sel].numpy().copy(),
                all_lp[sel].numpy().copy(),
            )
        )
    return results


def _sample_batch(
    model, prompt_ids, temps, gens, *, max_new_tokens, layer, eos, pad, min_new_tokens=0
):
    """One KV-cached sampling batch; see :func:`sample_trajectories`. Returns per row
    ``(token_ids, states (L,d) float32, entropy (L,), logprob (L,))``."""
    device = model.device
    base = model.base_model
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings().weight
    n_layers = num_layers(model)
    n_rows = len(prompt_ids)
    cache, logits, mask, next_pos, padded = _prefill(model, prompt_ids, pad)

    # capture the requested state of the fed token
    captured: dict[str, torch.Tensor] = {}
    layers = decoder_layers(model) if layer is not None and layer < n_layers else None
    handle = None
    if layers is not None:

        def hook(module, args, kw):
            captured["h"] = args[0] if args else kw["hidden_states"]

        handle = layers[layer].register_forward_pre_hook(hook, with_kwargs=True)

    temps = temps.to(device)
    greedy = temps == 0
    scale = torch.where(greedy, torch.ones_like(temps), temps)
    eos_t = torch.tensor(eos, dtype=torch.long, device=device)
    active = torch.arange(n_rows, device=device)
    rec_rows, rec_tok, rec_ent, rec_lp, rec_state = [], [], [], [], []
    try:
        for step in range(max_new_tokens):
            if step < min_new_tokens and len(eos):
                logits[:, eos_t] = float("-inf")  # as generate's min_new_tokens: no early end
            tok, ent, lp = _draw(logits, scale, greedy, active, gens, device)
            keep = ~torch.isin(tok, eos_t) if len(eos) else torch.ones_like(tok, dtype=torch.bool)
            if not bool(keep.all()):
                kept = keep.nonzero()[:, 0]
                active, tok, ent, lp = active[kept], tok[kept], ent[kept], lp[kept]
                mask, next_pos = mask[kept], next_pos[kept]
                if len(kept):
                    cache.batch_select_indices(kept)
            if len(active) == 0:
                break
            rec_rows.append(active)
            rec_tok.append(tok)
            rec_ent.append(ent)
            rec_lp.append(lp)
            if layer is None:
                rec_state.append(emb[tok])
                if step == max_new_tokens - 1:
                    break
            # feed the sampled tokens back: their states, and the next step's logits
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            generic = layer is not None and layer < n_layers and layers is None
            out = base(
                input_ids=tok[:, None],
                attention_mask=mask if padded else None,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
                **({"output_hidden_states": True} if generic else {}),
            )
            next_pos = next_pos + 1
            hidden = out.last_hidden_state[:, -1]
            if layer is not None:
                if layer == n_layers:
                    rec_state.append(hidden)
                elif generic:
                    rec_state.append(out.hidden_states[layer][:, -1])
                else:
                    rec_state.append(captured.pop("h")[:, -1])
            if step < max_new_tokens - 1:
                logits = head(hidden).float()
    finally:
        if handle is not None:
            handle.remove()

    d = emb.shape[-1]
    return _per_row(rec_rows, rec_tok, rec_ent, rec_lp, rec_state, n_rows, d)
