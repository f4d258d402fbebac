"""Test-session defaults shared by the unit tests and the notebook tests (nbval).

`python -m pytest` is the one test command. So that it runs the same way on a
laptop and in CI, the session defaults to the small-data switch (LENET_QUICK=1)
and, when the offline MNIST copy sits beside the repository (../shared), reads
the data from there. Values already set in the environment win. Notebook kernels
started by nbval inherit these variables.
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("LENET_SHARED_DIR") or REPO.parent / "shared")

os.environ.setdefault("LENET_QUICK", "1")
if "LENET_DATA_DIR" not in os.environ and (SHARED / "data" / "mnist-10k").is_dir():
    os.environ["LENET_DATA_DIR"] = str(SHARED / "data" / "mnist-10k")
