"""Lifecycle specs are validated when built and report every problem at once."""

from __future__ import annotations

import attrs
import pytest

from statetrainer import Edge, Guard, Lifecycle, SpecError, State, lifecycles


def _spec(edges: list[Edge], states: tuple[str, ...] = ("a", "b", "c"), **kw: object) -> Lifecycle:
    return Lifecycle(
        name="toy", states=tuple(State(s) for s in states), edges=edges,
        initial=kw.pop("initial", "a"), finals=kw.pop("finals", ("c",)),  # type: ignore[arg-type]
        guards=(Guard("more", "another item"),), **kw,  # type: ignore[arg-type]
    )


def test_a_valid_spec_builds() -> None:
    """A small spec with one guarded loop and fallbacks builds without error."""
    spec = _spec([Edge("a", "b"), Edge("b", "b", "loop", guard="more", label="it"), Edge("b", "c")])
    assert spec.out_edges("b")[0].label == "it"
    assert spec.fingerprint() == _spec(list(spec.edges)).fingerprint()


def _swap_first_two_edges_of(spec: Lifecycle, state: str) -> Lifecycle:
    edges = list(spec.edges)
    i, j = [k for k, e in enumerate(edges) if e.source == state][:2]
    edges[i], edges[j] = edges[j], edges[i]
    return attrs.evolve(spec, edges=tuple(edges))


def _edit_state(spec: Lifecycle, name: str, **changes: object) -> Lifecycle:
    return attrs.evolve(spec, states=tuple(attrs.evolve(s, **changes) if s.name == name else s for s in spec.states))


def _edit_edge(spec: Lifecycle, index: int, **changes: object) -> Lifecycle:
    return attrs.evolve(spec, edges=tuple(attrs.evolve(e, **changes) if i == index else e for i, e in enumerate(spec.edges)))


def test_the_fingerprint_changes_with_every_edit_of_meaning_and_only_those() -> None:
    """Checkpoints compare fingerprints: reordering edges (a request's priority), an edge's guard,
    label or kind, a state's role or feed binding, a feed and the epoch counter each change it;
    documentation, colours and the graph's name do not."""
    train = lifecycles.TRAIN
    loop = next(i for i, e in enumerate(train.edges) if e.label == "train_epoch_iter")
    stop = next(i for i, e in enumerate(train.edges) if e.kind == "control")
    edits = {
        "stop and stop_epoch swapped": _swap_first_two_edges_of(train, "training_step"),
        "loop label": _edit_edge(train, loop, label="batches"),
        "loop kind": _edit_edge(train, loop, kind="extension", reason="why"),
        "guard": _edit_edge(train, stop, guard=("stop_requested", "eval_due")),
        "role": _edit_state(train, "on_end_training_batch", roles={"batch_end"}),
        "feed binding": _edit_state(train, "training_step", item="train"),
        "feed": attrs.evolve(train, feeds=tuple(attrs.evolve(f, skip_flag="_skip") for f in train.feeds)),
        "epoch counter": attrs.evolve(train, epochs=attrs.evolve(train.epochs, attr="epoch")),
    }
    prints = {name: spec.fingerprint() for name, spec in edits.items()}
    assert train.fingerprint() not in prints.values()
    assert len(set(prints.values())) == len(edits), prints
    unchanged = [
        attrs.evolve(train, doc="other words", colorscheme="set33", graph_name="Other"),
        _edit_state(train, "training_step", doc="a docstring"),
        lifecycles.Lifecycle.from_dict(train.to_dict()),
    ]
    assert {spec.fingerprint() for spec in unchanged} == {train.fingerprint()}


def test_every_problem_is_listed_in_one_error() -> None:
    """Unknown names (with suggestions), unreachable, trap and unguarded-loop problems together."""
    with pytest.raises(SpecError, match=r"^lifecycle 'toy'") as info:
        _spec(
            [
                Edge("a", "bb"),  # unknown target, close to b
                Edge("a", "c"),  # second unguarded edge out of a
                Edge("b", "b", "loop", label="it"),  # a loop with no guard
                Edge("c", "c", guard="mor"),  # unknown guard
            ],
            states=("a", "b", "c", "d"),
        )
    text = str(info.value)
    assert "unknown state 'bb'; did you mean 'b'" in text
    assert "unknown guard 'mor'; did you mean 'more'" in text
    assert "state 'a' has 2 unguarded edges" in text
    assert "loop edge b -> b [it] has no guard" in text
    assert "state 'd' is a trap" in text
    assert "state 'd' is unreachable" in text
    assert "state 'b' is unreachable" in text
    assert len(info.value.problems) >= 7


def test_a_loop_without_an_exit_is_refused() -> None:
    """A guarded loop whose state has no way on to a final state cannot finish."""
    with pytest.raises(SpecError, match=r"state 'b' cannot reach a final state"):
        _spec([Edge("a", "c", guard="more"), Edge("a", "b"), Edge("b", "b")])


def test_extension_edges_need_a_reason_and_fallback_goes_last() -> None:
    """Extension edges must say why; the unguarded fallback must be declared last."""
    with pytest.raises(SpecError, match=r"extension edge b -> c needs a reason") as info:
        _spec([Edge("a", "b"), Edge("a", "c", guard="more"), Edge("b", "c", "extension")])
    text = str(info.value)
    assert "extension edge b -> c needs a reason" in text
    assert "state 'a': the unguarded edge a -> b must be declared last" in text


def test_builtin_lifecycles_have_exactly_the_seed_states() -> None:
    """train, evaluate and test hold the seed's states; evaluate's body is nested in train."""
    assert set(lifecycles.EVALUATE.state_names) <= set(lifecycles.TRAIN.state_names)
    assert lifecycles.TRAIN.region_states("evaluate") == (
        "on_evaluate_epoch_start", "on_evaluate_epoch_end", "on_evaluate_batch_start",
        "evaluate_batch", "on_evaluate_batch_end",
    )
    labels = {e.label for s in lifecycles.BUILTIN.values() for e in s.edges if e.label}
    assert labels == {"_num_epochs", "train_epoch_iter", "valid_epoch_iter", "test_loop_iter"}


def test_implicit_cases_are_declared_with_reasons() -> None:
    """Eval not due, empty iterables, skipped eval items, zero epochs and stop are all declared."""
    reasons = " | ".join(e.reason or "" for e in lifecycles.TRAIN.edges)
    for phrase in ("evaluation not due", "validation iterable is empty", "training iterable is empty",
                   "_next_loop", "no epoch to run", "stop requested"):
        assert phrase in reasons, phrase
    assert all(e.reason for e in lifecycles.TRAIN.extension_edges())


def test_unknown_lifecycle_name_suggests() -> None:
    """lifecycles.get() with a typo names the close match."""
    with pytest.raises(KeyError, match=r"unknown lifecycle 'trian'; did you mean 'train'"):
        lifecycles.get("trian")
