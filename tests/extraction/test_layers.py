"""Every depth from one forward pass: equal to one pass per kind, for both packaged LLMs;
one store per kind; stores refuse another LLM."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from llm_cases import PROMPTS, REL, RESPONSES

from sde_utils.extraction import gemma
from sde_utils.extraction.layers import (
    capture_states,
    check_store_llm,
    depth_kinds,
    extract_layers,
    relative_depth,
    store_llm,
)
from sde_utils.extraction.llm import load_llm
from sde_utils.extraction.states import teacher_forced_states
from sde_utils.extraction.store import load_store


@pytest.fixture(scope="module")
def gemma_lm():
    pytest.importorskip(gemma.GEMMA_PACKAGE)
    return load_llm(gemma.GEMMA_LLM)  # the cache (test_gemma.py primes it from its GGUF load)


def _assert_same_as_single_passes(model, tokenizer, kinds):
    multi = capture_states(model, tokenizer, PROMPTS, RESPONSES, kinds, batch_size=2)
    assert list(multi) == kinds
    for kind in kinds:
        single = teacher_forced_states(
            model, tokenizer, PROMPTS, RESPONSES, kind=kind, batch_size=2
        )
        for a, b in zip(single, multi[kind], strict=True):
            assert a["token_ids"] == b["token_ids"] and a["prompt_len"] == b["prompt_len"]
            assert a["states"].shape == b["states"].shape and a["states"].dtype == np.float32
            # the same batches through the same kernels: equal in practice; REL (llm_cases)
            # of the largest |state| leaves room for rounding only (residual streams carry
            # activations of several hundred, up to ~3e4 in Gemma's deep blocks)
            scale = float(np.abs(a["states"]).max())
            assert np.abs(a["states"] - b["states"]).max() <= REL * scale
    # control: different kinds really are different states (the check can fail)
    a, b = multi[kinds[1]][0]["states"], multi[kinds[-1]][0]["states"]
    assert np.abs(a - b).max() > 1e-2


def test_multi_kind_capture_equals_single_passes_smollm(lm):
    model, tokenizer = lm
    _assert_same_as_single_passes(model, tokenizer, depth_kinds(model, 4))


def test_multi_kind_capture_equals_single_passes_gemma(gemma_lm):
    model, tokenizer = gemma_lm
    kinds = depth_kinds(model, 4)
    assert kinds == ["input", "layer:6", "layer:12", "hidden"]
    _assert_same_as_single_passes(model, tokenizer, kinds)


def test_depth_kinds_and_relative_depth(lm):
    model, _ = lm  # 30 blocks
    assert depth_kinds(model, 2) == ["input", "hidden"]
    assert depth_kinds(model, 7) == [
        "input",
        *[f"layer:{n}" for n in (5, 10, 15, 20, 25)],
        "hidden",
    ]
    assert [relative_depth(model, k) for k in ("input", "layer:15", "hidden")] == [0, 0.5, 1]
    assert relative_depth(18, "layer:9") == 0.5
    with pytest.raises(ValueError, match="n_depths"):
        depth_kinds(model, 1)
    with pytest.raises(ValueError, match="30 layers"):
        relative_depth(model, "layer:31")


def test_layer_outside_the_range_names_the_models_range(lm):
    model, tokenizer = lm
    with pytest.raises(ValueError, match=r"N in 0\.\.30 \(this model, llama, has 30 layers\)"):
        capture_states(model, tokenizer, PROMPTS, RESPONSES, ["input", "layer:31"])


def _pairs(n=6):
    return datasets.Dataset.from_dict(
        {
            "pair_id": [f"p{i}" for i in range(n)],
            "conv_id": [f"c{i}" for i in range(n)],
            "prompt": (PROMPTS * 2)[:n],
            "response": (RESPONSES * 2)[:n],
        }
    )


def test_extract_layers_writes_one_store_per_kind_from_one_capture(lm, tmp_path, monkeypatch):
    model, tokenizer = lm
    kinds = ["input", "layer:10", "hidden"]
    splits = ["train", "train", "val", "val", "test", "test"]
    calls = []
    import sde_utils.extraction.layers as layers

    real = layers.capture_states
    monkeypatch.setattr(layers, "capture_states", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = dict(llm="smollm2-135m-instruct", kinds=kinds, params={"seed": 0}, root=tmp_path)
    paths = extract_layers(_pairs(), splits, model, tokenizer, chunk_size=4, **kw)
    assert list(paths) == kinds and len(set(paths.values())) == 3
    assert len(calls) == 2  # two chunks of pairs, each through the model once for 3 kinds
    single = teacher_forced_states(model, tokenizer, PROMPTS, RESPONSES, kind="layer:10")
    store = load_store(paths["layer:10"])
    assert store.meta["embedding_kind"] == "layer:10"
    assert store_llm(store) == "smollm2-135m-instruct"
    # other batches (chunks of 4, padded differently) round differently: REL of max |state|
    got, want = np.asarray(store.trajectory(1)), single[1]["states"]
    assert np.abs(got - want).max() <= REL * np.abs(want).max()
    # reuse: the same request runs no forward pass
    again = extract_layers(_pairs(), splits, model, tokenizer, chunk_size=4, **kw)
    assert again == paths and len(calls) == 2


def test_a_store_of_one_llm_is_refused_for_the_other(lm, tmp_path):
    model, tokenizer = lm
    splits = ["train", "train", "val", "val", "test", "test"]
    kw = dict(kinds=["input"], params={"seed": 0}, root=tmp_path)
    path = extract_layers(_pairs(), splits, model, tokenizer, llm="smollm2-135m-instruct", **kw)
    store = load_store(path["input"])
    check_store_llm(store, "smollm2-135m-instruct")  # control: its own LLM is accepted
    with pytest.raises(
        ValueError, match="holds states of the LLM 'smollm2-135m-instruct', not 'gemma3-270m'"
    ):
        check_store_llm(store, gemma.GEMMA_LLM)
