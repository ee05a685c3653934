"""Workers of the sharded-build tests: each runs as one rank of a 2-process gloo group
(started by ``torch.multiprocessing.spawn``, which passes the rank first)."""

from __future__ import annotations

import datasets
import torch
import torch.distributed as dist
from llm_cases import PROMPTS, RESPONSES
from store_cases import PARAMS, FakeEmbed, make_items

from sde_utils.config import torch_threads
from sde_utils.extraction.sharding import build_store_sharded, rank_and_world

WORLD = 2


def join(rank: int, port: int) -> None:
    torch.set_num_threads(1)  # as in a one-process build with one thread
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)  # fmt: skip


class RankFailingEmbed(FakeEmbed):
    """FakeEmbed that raises on every chunk rank ``fail_rank`` computes."""

    def __init__(self, fail_rank: int):
        super().__init__()
        self.fail_rank = fail_rank

    def __call__(self, items):
        if rank_and_world()[0] == self.fail_rank:
            raise RuntimeError(f"simulated failure on rank {self.fail_rank}")
        return super().__call__(items)


def fake_store(rank: int, port: int, root: str, fail_rank: int | None, queue) -> None:
    """Every rank builds the fixture store (chunks of 2 items: 6 chunks); the ranks report
    the path they got, the pair ids their embed_fn saw, or the error they raised."""
    join(rank, port)
    embed = FakeEmbed() if fail_rank is None else RankFailingEmbed(fail_rank)
    try:
        path = build_store_sharded("run", make_items(), embed, params=PARAMS, chunk_size=2,
                                   root=root, progress=False)  # fmt: skip
        queue.put((rank, "ok", str(path), embed.calls))
    except Exception as err:  # noqa: BLE001 - reported to the test
        queue.put((rank, "error", f"{type(err).__name__}: {err}", embed.calls))
    finally:
        dist.destroy_process_group()


def tiny_pairs() -> tuple[datasets.Dataset, list[str]]:
    n = len(RESPONSES)
    pairs = datasets.Dataset.from_dict(
        {
            "pair_id": [f"p{i}" for i in range(n)],
            "conv_id": [f"c{i // 2}" for i in range(n)],
            "prompt": PROMPTS[:n],
            "response": RESPONSES,
        }
    )
    return pairs, ["train", "train", "val", "val", "test"][:n]


def tiny_prompts() -> list[dict]:
    return [
        {"pair_id": f"q{i}", "conv_id": f"c{i}", "prompt": p, "split": "train"}
        for i, p in enumerate(PROMPTS[:3])
    ]


def llm_stores(root: str, sample_threads: int = 1) -> list[str]:
    """The two LLM stores of the tests (teacher-forced ``layer:3`` states of 5 pairs in
    chunks of 2, with one torch thread; 3 prompts answered twice at T = 1, 8 tokens, one
    prompt per chunk, with ``sample_threads`` torch threads set by the caller)."""
    from sde_utils.extraction.extract import extract_pairs, sample_to_store
    from sde_utils.extraction.llm import load_llm

    model, tokenizer = load_llm(device="cpu")
    pairs, splits = tiny_pairs()
    with torch_threads(1):
        tf = extract_pairs(pairs, splits, model, tokenizer, kind="layer:3",
                           params={"test": "tf"}, batch_size=2, chunk_size=2,
                           root=root, progress=False)  # fmt: skip
    with torch_threads(sample_threads):
        assert torch.get_num_threads() == sample_threads
        sampled = sample_to_store(tiny_prompts(), model, tokenizer, k=2, temperatures=[1.0],
                                  max_new_tokens=8, kind="layer:3", seed=5,
                                  params={"test": "sampled"}, prompts_per_chunk=1,
                                  root=root, progress=False)  # fmt: skip
    return [str(tf), str(sampled)]


def llm_worker(rank: int, port: int, root: str, queue) -> None:
    join(rank, port)
    try:
        queue.put((rank, "ok", llm_stores(root)))
    except Exception as err:  # noqa: BLE001 - reported to the test
        queue.put((rank, "error", f"{type(err).__name__}: {err}"))
    finally:
        dist.destroy_process_group()
