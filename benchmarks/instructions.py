"""Per-batch instruction counts under callgrind: deterministic, unlike wall time on a shared VM.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/instructions.py KIND N

is run by ``python benchmarks/instructions.py --measure`` for KIND in (hand, method, trainer) and
two batch counts; the per-batch count is the difference divided by the difference in batches,
so imports and setup cancel out.
"""

from __future__ import annotations

import re
import subprocess
import sys


def run(kind: str, batches: int) -> None:
    import torch

    sys.path.insert(0, "benchmarks")
    import overhead

    torch.set_num_threads(1)
    data = overhead._data(batches)
    if kind == "hand":
        overhead.hand_loop(data)
    elif kind == "method":
        overhead.method_loop(data)
    else:
        overhead.Linear(data).train()


def count(kind: str, batches: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, kind, str(batches)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))  # type: ignore[union-attr]


def measure(low: int = 200, high: int = 1200) -> None:
    per = {}
    for kind in ("hand", "method", "trainer"):
        per[kind] = (count(kind, high) - count(kind, low)) / (high - low)
        print(f"{kind:8s} {per[kind]:12,.0f} instructions per batch", flush=True)
    print(f"method / hand    {per['method'] / per['hand']:.4f}")
    print(f"trainer / method {per['trainer'] / per['method']:.4f}  (statetrainer's own cost)")
    print(f"trainer / hand   {per['trainer'] / per['hand']:.4f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        measure()
    else:
        run(sys.argv[1], int(sys.argv[2]))
