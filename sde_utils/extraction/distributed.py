"""Command line: build notebook 01's and 02's stores for a profile on many processes.

Started by ``torchrun``; every rank computes its shard of the chunks
(:mod:`sde_utils.extraction.sharding`) and rank 0 assembles each store. The stores get the
run ids the notebooks compute, so the notebooks, run afterwards on one process
(``python -m sde_utils --profile P``), find and reuse them::

    # one machine, N GPUs (or N CPU processes on the gloo backend)
    torchrun --nproc-per-node N -m sde_utils.extraction.distributed --profile gpu
    # M machines with N GPUs each, the same command on every one (NODE = 0 .. M-1);
    # the output root must be one shared file system
    torchrun --nnodes M --nproc-per-node N --node-rank NODE \\
        --rdzv-backend c10d --rdzv-endpoint HOST:29500 --rdzv-id sde \\
        -m sde_utils.extraction.distributed --profile gpu --output-root /shared/run

The backend is ``nccl`` with CUDA (rank uses ``cuda:LOCAL_RANK``), else ``gloo``; on the
CPU each rank keeps torchrun's ``OMP_NUM_THREADS`` (1 by default). Notebook 02's store
depends on 01's, so ``--notebooks 02`` alone rebuilds (or reuses) 01's first.
"""

from __future__ import annotations

import argparse
import ast
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from sde_utils import paths
from sde_utils.config import seed_everything
from sde_utils.extraction.extract import extract_pairs, sample_to_store
from sde_utils.extraction.llm import load_llm
from sde_utils.extraction.pairs import assign_splits, load_pairs, pick_prompts
from sde_utils.extraction.sharding import rank_and_world
from sde_utils.extraction.store import load_store

NOTEBOOK_01, NOTEBOOK_02 = "01-extract-embeddings", "02-sample-trajectories"


def notebook_parameters(stem: str, profile: str | os.PathLike) -> dict[str, Any]:
    """A notebook's parameters under a profile: its parameters cell's literal defaults,
    then the profile's ``common`` values it declares, then its own block (an unknown name
    in its block is an error): what the runner injects into that notebook."""
    import nbformat

    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{stem}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    defaults = {
        t.id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = paths.PARAMS_DIR / f"{profile}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    own = dict(data.get(stem) or {})
    unknown = sorted(set(own) - set(defaults))
    if unknown:
        raise ValueError(f"{path}: {stem} has no parameters {unknown}; allowed: {sorted(defaults)}")
    common = {k: v for k, v in (data.get("common") or {}).items() if k in defaults}
    return defaults | common | own


def build_profile_stores(
    params: Mapping[str, Mapping[str, Any]],
    notebooks: Sequence[str] = ("01", "02"),
    *,
    root: Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[Path]:
    """Notebook 01's store (and 02's, if ``"02"`` is in ``notebooks``) from the notebooks'
    parameters ``params[stem]``, as the notebooks build them; sharded over the ranks of
    an initialised process group, else on this process. Returns the store paths."""
    p1 = params[NOTEBOOK_01]
    seed_everything(p1["seed"])
    model, tokenizer = load_llm(p1["model_name"], device=device)
    pairs = load_pairs(
        p1["source"],
        n_pairs=p1["n_pairs"],
        seed=p1["seed"],
        data_path=p1["data_path"],
        min_response_tokens=p1["min_response_tokens"],
        max_response_tokens=p1["max_response_tokens"],
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False).input_ids),
    )
    splits = assign_splits(
        pairs["conv_id"], val_frac=p1["val_frac"], test_frac=p1["test_frac"], seed=p1["seed"]
    )
    store_params = {k: v for k, v in p1.items() if k != "batch_size"}  # as notebook 01
    first = extract_pairs(
        pairs, splits, model, tokenizer, kind=p1["embedding_kind"], params=store_params,
        batch_size=p1["batch_size"], root=root, progress=progress,
    )  # fmt: skip
    built = [first]
    if "02" in notebooks:
        p2 = params[NOTEBOOK_02]
        if p2["model_name"] != p1["model_name"]:
            model, tokenizer = load_llm(p2["model_name"], device=device)
        seed_everything(p2["seed"])
        prompts = pick_prompts(load_store(first).sequences, p2["n_prompts"], p2["seed"])
        store_params = {k: v for k, v in p2.items() if k != "prompts_per_chunk"}  # as 02
        store_params["source_store"] = first.name
        built.append(
            sample_to_store(
                prompts,
                model,
                tokenizer,
                k=p2["k"],
                temperatures=p2["temperatures"],
                max_new_tokens=p2["max_new_tokens"],
                kind=p2["embedding_kind"],
                seed=p2["seed"],
                params=store_params,
                prompts_per_chunk=p2["prompts_per_chunk"],
                root=root,
                progress=progress,
            )  # fmt: skip
        )
    return built


def output_root(profile: str, explicit: str | None = None) -> Path:
    """Where the runner writes ``profile`` (``sde_utils.pipeline.run``'s rule): the explicit
    root, else ``SDE_OUTPUT_ROOT``, else the project for ``default``, else ``runs/<profile>``."""
    chosen = explicit or os.environ.get("SDE_OUTPUT_ROOT")
    if chosen:
        return Path(chosen).resolve()
    return paths.PROJ_ROOT if profile == "default" else paths.PROJ_ROOT / "runs" / profile


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Parse the command line, join the process group, build the stores (paths printed by
    rank 0), leave the group."""
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m sde_utils.extraction.distributed",
        description="Build notebook 01's and 02's trajectory stores, sharded over processes.",
    )
    parser.add_argument("--profile", default="default", help="params/<profile>.yaml or a path")
    parser.add_argument("--notebooks", nargs="+", default=["01", "02"], choices=["01", "02"])
    parser.add_argument("--output-root", default=None, help="as the runner's --output-root")
    args = parser.parse_args(argv)
    params = {s: notebook_parameters(s, args.profile) for s in (NOTEBOOK_01, NOTEBOOK_02)}
    root = output_root(Path(args.profile).stem, args.output_root)
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        built = build_profile_stores(
            params,
            args.notebooks,
            root=root / "data" / "processed" / "trajectories",
            device=device,
            progress=rank_and_world()[0] == 0,
        )
        if rank_and_world()[0] == 0:
            print("\n".join(str(p) for p in built))
        return built
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

__all__ = ["notebook_parameters", "build_profile_stores", "output_root", "main"]
