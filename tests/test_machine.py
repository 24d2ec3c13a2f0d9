"""The driver takes the edges the ``transitions`` Machine takes; transitions stays hidden.

The property runs the driver itself — a :class:`~statetrainer.driver.Program` over the
compiled table, with composed guards and the fast/full paths switched by pending control
requests — on random guard outcomes and requests, and steps a ``transitions`` Machine of
the same spec on the same outcomes, independently: the transitions side models the
control requests itself (a stop holds until the run ends; stop_epoch and skip_batch hold
for the one choice after the state that made them).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statetrainer import TrainerRunError, lifecycles
from statetrainer.driver import Driver, Program, Request
from statetrainer.machine import build_machine, compile_machine
from statetrainer.spec import CONTROL_GUARDS, OVERRIDDEN_SUFFIX, Lifecycle

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
from gan_lifecycle import GAN  # noqa: E402
from grad_accumulation import ACCUMULATE  # noqa: E402

SPECS = [*lifecycles.BUILTIN.values(), *lifecycles.GAN.values(), GAN, ACCUMULATE]
#: How many states a walk enters before it requests a stop with every guard false.
LONGEST = 60
#: The requests a state makes, weighted: mostly none (the driver's fast path), a stop rarely
#: (it ends the walk); a queued checkpoint keeps the driver on its full path until served.
REQUESTS = st.sampled_from([
    *[()] * 16, ("skip",), ("skip",), ("epoch_stop",), ("epoch_stop",), ("epoch_stop", "skip"),
    ("checkpoint",), ("checkpoint",), ("checkpoint",), ("checkpoint", "skip"), ("checkpoint", "epoch_stop"),
    ("stop",), ("stop", "epoch_stop"), ("stop", "skip"), ("stop", "epoch_stop", "skip"),
])
#: A compound hook is rarely overridden (an override skips the compound's body, ending the walk early).
OVERRIDDEN = st.sampled_from([False] * 7 + [True])
GUARD_OF = {"stop": "stop_requested", "epoch_stop": "epoch_stop_requested", "skip": "skip_requested"}


def _drive(spec: Lifecycle, data: st.DataObject) -> tuple[list[tuple[str, int | None]], list[dict[str, Any]]]:
    """Run the driver on ``spec`` with guard outcomes and requests drawn as each state is entered.

    Returns the trace as ``(state, edge index)`` and what was drawn at each entry.
    """
    table = compile_machine(spec)
    driver = Driver()
    free = [g for g in table.guards if g not in CONTROL_GUARDS]
    drawn: list[dict[str, Any]] = []

    def enter() -> None:
        if len(drawn) >= LONGEST:
            step = {"guards": dict.fromkeys(free, False), "requests": ("stop",)}
        else:
            step = {"guards": {g: data.draw(OVERRIDDEN if g.endswith(OVERRIDDEN_SUFFIX) else st.booleans(), label=g)
                               for g in free},
                    "requests": data.draw(REQUESTS, label="requests")}
        drawn.append(step)
        for request in step["requests"]:
            if request == "checkpoint":
                driver.control.add(Request("checkpoint"))
            else:
                driver.control.request(request)

    def serve(program: Program, state: int) -> None:  # a boundary: a queued checkpoint waits a few states
        if data.draw(st.integers(0, 3), label="serve") == 0:
            driver.control.take_requests()

    ctl = driver.control
    control = {"stop_requested": lambda: ctl.stop, "epoch_stop_requested": lambda: ctl.epoch_stop,
               "skip_requested": lambda: ctl.skip}
    guards = [control.get(g) or (lambda g=g: drawn[-1]["guards"][g]) for g in table.guards]
    program = Program(table, [(enter,)] * len(table.names), guards, {})
    driver.serve = serve
    driver.run(program, table.initial)
    return [(e.state, e.edge) for e in driver.trace], drawn


def _record_fired(spec: Lifecycle, machine: Any) -> list[int]:
    """A list the Machine appends the index (in ``spec.edges``) of each transition it fires to."""
    fired: list[int] = []
    for source, rows in machine.events["advance"].transitions.items():
        positions = [i for i, e in enumerate(spec.edges) if e.source == source]
        for row, position in zip(rows, positions, strict=True):
            row.after.append(lambda position=position: fired.append(position))
    return fired


def _step_transitions(spec: Lifecycle, drawn: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    """The walk of a ``transitions`` Machine of ``spec`` for the same draws: its own state, its own
    record of which transition fired (mapped to the edge's index by declaration order)."""
    machine, model = build_machine(spec)
    fired = _record_fired(spec, machine)
    walk: list[tuple[str, int | None]] = [(str(model.state), None)]
    stopped = False
    for step in drawn:
        state = str(model.state)
        if not machine.get_triggers(state):
            break
        stopped |= "stop" in step["requests"]
        outcomes = dict(step["guards"])
        outcomes.update({guard: request in step["requests"] for request, guard in GUARD_OF.items()})
        outcomes["stop_requested"] = stopped
        model.outcomes = outcomes
        model.advance()
        walk.append((str(model.state), fired[-1]))
    return walk


@given(st.sampled_from(SPECS), st.data())
def test_the_driver_takes_the_edges_transitions_takes(spec: Lifecycle, data: st.DataObject) -> None:
    """For random guard outcomes and control requests (alone or combined, switching the driver
    between its fast and full paths), the driver enters the same states by the same edges as a
    transitions Machine stepped on the same outcomes, and both stop at the same final state."""
    walk, drawn = _drive(spec, data)
    assert walk == _step_transitions(spec, drawn)
    assert walk[-1][0] in spec.finals and len(walk) == len(drawn)


class _Halt(Exception):
    pass


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.graph_name}")
def test_one_step_from_every_state_for_every_outcome_and_request(spec: Lifecycle) -> None:
    """From each state, for every truth table of the guards on its edges and every set of
    requests made in it (stop, stop_epoch, skip_batch, a queued checkpoint), the driver's next
    state and edge are the transitions Machine's."""
    table = compile_machine(spec)
    machine, model = build_machine(spec)
    fired = _record_fired(spec, machine)
    now: dict[str, Any] = {}
    driver = Driver()

    def call() -> None:  # the first state makes the requests; entering the next one ends the step
        if now["entered"]:
            raise _Halt
        now["entered"] = True
        for request in now["requests"]:
            if request == "checkpoint":
                driver.control.add(Request("checkpoint"))
            else:
                driver.control.request(request)

    ctl = driver.control
    control = {"stop_requested": lambda: ctl.stop, "epoch_stop_requested": lambda: ctl.epoch_stop,
               "skip_requested": lambda: ctl.skip}
    guards = [control.get(g) or (lambda g=g: now["guards"].get(g, False)) for g in table.guards]
    program = Program(table, [(call,)] * len(table.names), guards, {})
    requests = [c for n in range(5) for c in itertools.combinations(("stop", "epoch_stop", "skip", "checkpoint"), n)]
    for state in spec.state_names:
        if state in spec.finals:
            continue
        used = sorted({g for e in spec.out_edges(state) for g in e.guard} - set(CONTROL_GUARDS))
        for values in itertools.product((False, True), repeat=len(used)):
            for made in requests:
                now.update(entered=False, requests=made, guards=dict(zip(used, values)))
                driver.trace.clear()
                ctl.clear()
                with pytest.raises(TrainerRunError, match=r"^_Halt: \n  raised in lifecycle") as info:
                    driver.run(program, table.index[state])
                assert isinstance(info.value.__cause__, _Halt)
                step = [(e.state, e.edge) for e in driver.trace]
                machine.set_state(state)
                model.outcomes = {**dict.fromkeys(spec.guard_names, False), **now["guards"],
                                  **{GUARD_OF[r]: True for r in made if r in GUARD_OF}}
                model.advance()
                assert step == [(state, None), (model.state, fired[-1])], (state, now["guards"], made)


def test_machine_is_flat_without_auto_transitions_and_a_dedicated_model() -> None:
    """No to_<state> triggers, one 'advance' trigger; the model is not a trainer or nn.Module."""
    machine, model = build_machine(lifecycles.TRAIN)
    assert not any(name.startswith("to_") for name in machine.events)
    assert set(machine.events) == {"advance"}
    assert type(model).__mro__[1].__name__ == "_GuardModel"
    assert not hasattr(model, "parameters")


def test_fast_rows_drop_only_control_edges() -> None:
    """The no-request fast path holds every non-control edge in the same order."""
    table = compile_machine(lifecycles.TRAIN)
    for rows, fast in zip(table.edges, table.normal):
        assert [r for r in rows if r.edge.kind != "control"] == list(fast)


def test_compiled_edges_know_their_declared_position() -> None:
    """Each compiled row points at its own edge in ``lifecycle.edges`` (what the trace records)."""
    for spec in SPECS:
        table = compile_machine(spec)
        rows = [row for state_rows in table.edges for row in state_rows]
        assert sorted(row.position for row in rows) == list(range(len(spec.edges)))
        assert all(spec.edges[row.position] is row.edge for row in rows)
