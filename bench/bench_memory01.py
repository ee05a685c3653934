"""Peak memory of notebook 01 on a profile (default: the main job's) against its 4 GB budget.

Runs notebook 01 through the runner into a scratch output folder (the model cache under
data/interim is reused) and reads the kernel's peak resident set size, which the notebook
records itself from getrusage. The ratio printed last is peak / budget.

    python bench/bench_memory01.py [--profile default]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BUDGET_MB = 4096


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as scratch:
        env = os.environ | {"SDE_OUTPUT_ROOT": scratch}
        cmd = [sys.executable, "-m", "sde_utils.pipeline.run", "--profile", args.profile, "--only", "01",
               "--no-progress"]  # fmt: skip
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
        record = Path(scratch) / "reports" / "metrics" / "01-extract-embeddings.json"
        metrics = json.loads(record.read_text())["metrics"]
    peak = metrics["peak_rss_mb"]
    print(f"notebook 01 ({args.profile}): {metrics['n_tokens']} tokens, peak RSS {peak:.0f} MB")
    ratio = peak / BUDGET_MB
    verdict = "PASS" if ratio <= 1 else "FAIL"
    print(f"ratio peak/budget = {ratio:.2f} (peak {peak:.0f} MB, budget {BUDGET_MB} MB): {verdict}")
    return 0 if ratio <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
