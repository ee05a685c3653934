"""Source notebooks carry no outputs: check (default) or strip them (``--strip``).

python -m sde_utils.pipeline.nbcheck notebooks           # exit 1 listing notebooks with outputs
python -m sde_utils.pipeline.nbcheck --strip notebooks   # remove outputs and execution counts
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat


def has_outputs(nb: nbformat.NotebookNode) -> bool:
    return any(
        cell.get("outputs") or cell.get("execution_count") is not None
        for cell in nb.cells
        if cell.cell_type == "code"
    )


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sde_utils.pipeline.nbcheck", description=__doc__
    )
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--strip", action="store_true", help="strip instead of checking")
    args = parser.parse_args(argv)
    dirty = []
    for folder in args.folders:
        for path in sorted(folder.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            if has_outputs(nb):
                dirty.append(path)
                if args.strip:
                    nbformat.write(strip(nb), path)
    if dirty and not args.strip:
        print("notebooks with outputs (run `make format`):", *map(str, dirty), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
