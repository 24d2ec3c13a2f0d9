"""The compiled dispatch table and the transitions Machine agree; transitions stays hidden."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from statetrainer import lifecycles
from statetrainer.machine import build_machine, compile_machine, step_with_transitions

SPECS = list(lifecycles.BUILTIN.values())


@given(st.sampled_from(SPECS), st.data())
def test_compiled_table_agrees_with_transitions_on_random_guards(spec: lifecycles.Lifecycle, data: st.DataObject) -> None:
    """For random guard outcomes in random states, both give the same next state."""
    table = compile_machine(spec)
    machine, model = build_machine(spec)
    state = spec.initial
    for _ in range(40):
        outcomes = {g: data.draw(st.booleans(), label=g) for g in spec.guard_names}
        expected = table.next_state(state, outcomes)
        if expected is None:
            assert state in spec.finals
            assert step_with_transitions(spec, state, outcomes) is None
            break
        machine.set_state(state)
        model.outcomes = outcomes
        model.advance()
        assert model.state == expected
        state = expected


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
