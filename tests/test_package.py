import importlib
import subprocess
import sys

import sde_utils


def test_every_exported_name_resolves_to_its_module():
    for name in sde_utils.__all__:
        obj = getattr(sde_utils, name)
        module = importlib.import_module(f"sde_utils.{sde_utils._WHERE[name]}")
        assert obj is getattr(module, name)


def test_import_is_cheap():
    # the runner's CLI imports sde_utils; torch and transformers must not load with it
    code = "import sys, sde_utils, sde_utils.paths; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
