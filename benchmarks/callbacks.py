"""What a callback costs per state entry: none, a no-op one, a filtered one (``every=``, ``when=``).

    python benchmarks/callbacks.py [--rounds 11] [--batches 2000] [--cg-batches 200] [--smoke]

A no-op ConvnetTrainer (``trainers.NoOp``) with K no-op callbacks on ``on_end_training_batch``
(entered once per batch): unfiltered (``trainer.on(state, fn)``), filtered with ``every=10**9``
and with ``when=`` a predicate that is never true (so the filtered ones never call ``fn``:
what is left is the filter's own cost). The cost per entry and callback is
``(per batch with K - per batch with none) / K``; a filter pays off when it costs less than the
call it skips. Ignite's event handlers, plain and ``Events.ITERATION_COMPLETED(every=...)``,
are measured the same way when Ignite is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import harness
from harness import Counts, Samples, Table, fmt
from workloads import Prepare, Timed, noop_items, noop_process

#: Callbacks attached per case: enough that their cost stands out of the CPU-time noise.
K = 10
#: The state the callbacks are attached to (entered once per batch).
STATE = "on_end_training_batch"
NEVER = 10**9


def noop_callback(trainer: Any) -> None:
    """The callback: does nothing."""


def never(trainer: Any) -> bool:
    """A ``when=`` predicate that is never true."""
    return False


def statetrainer_case(n: int, filters: Mapping[str, Any] | None = None, k: int = K) -> Timed:
    """A no-op trainer over ``n`` items with ``k`` callbacks (none when ``filters`` is None)."""
    import trainers

    trainer = trainers.NoOp(noop_items(n))
    if filters is not None:
        for _ in range(k):
            trainer.on(STATE, noop_callback, **filters)
    return trainer.train


def ignite_case(n: int, every: int | None = 0, k: int = K) -> Timed:
    """Ignite's Engine with ``k`` no-op handlers per iteration (none when ``every`` is 0)."""
    from ignite.engine import Engine, Events

    items, engine = noop_items(n), Engine(noop_process)
    event = Events.ITERATION_COMPLETED if not every else Events.ITERATION_COMPLETED(every=every)
    if every != 0:
        for _ in range(k):
            engine.add_event_handler(event, noop_callback)
    return lambda: engine.run(items, max_epochs=1)


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "st/none": ("statetrainer: no callback", {"filters": None}),
    "st/plain": ("statetrainer: `on(state, fn)`", {"filters": {}}),
    "st/every": ("statetrainer: `on(state, fn, every=10**9)`", {"filters": {"every": NEVER}}),
    "st/when": ("statetrainer: `on(state, fn, when=never)`", {"filters": {"when": never}}),
    "ignite/none": ("Ignite: no handler", {"every": 0}),
    "ignite/plain": ("Ignite: `add_event_handler(ITERATION_COMPLETED, fn)`", {"every": None}),
    "ignite/every": ("Ignite: `ITERATION_COMPLETED(every=10**9)`", {"every": NEVER}),
}


def cases() -> dict[str, Prepare]:
    """Every case by name (Ignite's only when Ignite is installed)."""
    out: dict[str, Prepare] = {}
    for name, (_, options) in CASES.items():
        if name.startswith("ignite/") and not harness.optional("ignite"):
            continue
        run = ignite_case if name.startswith("ignite/") else statetrainer_case
        out[name] = _bind(run, options)
    return out


def _bind(run: Any, options: Mapping[str, Any]) -> Prepare:
    def prepare(n: int) -> Timed:
        return run(n, **options)  # type: ignore[no-any-return]

    return prepare


def cost_table(per_batch: Mapping[str, float], cpu: Mapping[str, Samples] | None,
               counts: Counts | None) -> Table:
    """Per entry and callback: instructions and CPU ns, and each filter against the call it skips."""
    rows, notes = [], []
    for name, (label, _) in CASES.items():
        framework, kind = name.split("/")
        if kind == "none" or name not in per_batch:
            continue
        base = f"{framework}/none"
        instr = (counts.per_unit(name) - counts.per_unit(base)) / K if counts else None
        ns = harness.paired(cpu, name, base) * 1000 / K if cpu else None
        rows.append([label, fmt(instr), fmt(ns, 1)])
    for framework, filters in (("st", ("every", "when")), ("ignite", ("every",))):
        for kind in filters:
            name, plain = f"{framework}/{kind}", f"{framework}/plain"
            if name not in per_batch:
                continue
            parts = []
            if counts:
                none = counts.per_unit(f"{framework}/none")
                parts.append(f"{_over(counts.per_unit(name), counts.per_unit(plain), none)} by instructions")
            if cpu:
                parts.append(f"{_paired_ratio(cpu, name, plain, f'{framework}/none')} by CPU time")
            notes.append(f"{CASES[name][0]} costs {' and '.join(parts)} of the call it skips (< 1: the filter pays)")
    notes.append(f"{K} callbacks on `{STATE}` (entered once per batch); costs divided by {K}.")
    return Table("Callbacks: cost per state entry and callback",
                 ["callback", "instructions", "CPU ns"], rows, notes)


def _over(value: float, plain: float, none: float) -> str:
    return f"{(value - none) / (plain - none):.2f}x" if plain != none else "—"


def _paired_ratio(cpu: Mapping[str, Samples], name: str, plain: str, none: str) -> str:
    return _over(harness.paired(cpu, name, none), harness.paired(cpu, plain, none), 0.0)


def main() -> None:
    parser = harness.base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=11, help="CPU-time rounds")
    parser.add_argument("--batches", type=int, default=2000, help="CPU time: N (runs at N and 2N batches)")
    parser.add_argument("--cg-batches", type=int, default=200, help="callgrind: N (counts at N and 2N batches)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.batches = 1, 20
    all_cases = cases()
    notes = [] if harness.optional("ignite") else ["Ignite left out: not installed (benchmarks/requirements.txt)"]
    counts = cpu = None
    if args.only != "cpu":
        skipped = harness.no_instruction_counts(args.smoke)
        if skipped:
            notes.append(skipped)
        else:
            groups = [[n for n in all_cases if n.startswith(prefix)] for prefix in ("st/", "ignite/")]
            counts = harness.count_instructions(__file__, [g for g in groups if g],
                                                {n: (args.cg_batches, 2 * args.cg_batches) for n in all_cases},
                                                args.jobs)
    if args.only != "instructions":
        cpu = harness.cpu_samples(all_cases, {n: (args.batches, 2 * args.batches) for n in all_cases}, args.rounds)
    table = cost_table(dict.fromkeys(all_cases, 0.0), cpu, counts)
    table.notes = notes + table.notes
    harness.emit([table], args.json)


if __name__ == "__main__":
    main()
