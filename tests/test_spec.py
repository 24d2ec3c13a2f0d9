"""Lifecycle specs are validated when built and report every problem at once."""

from __future__ import annotations

import runpy
from pathlib import Path

import attrs
import pytest

from statetrainer import Edge, Feed, Guard, Lifecycle, LifecycleTrainer, SpecError, State, lifecycles

EXAMPLES = Path(__file__).parent.parent / "examples"


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


# -- feeds: the item a taking state takes, and the item a using state receives ---------------

D = Feed("d", guard="more", loader="train_loader")


def _fed(states: tuple[State, ...], edges: tuple[Edge, ...], feeds: tuple[Feed, ...] = (D,),
         initial: str = "start", finals: tuple[str, ...] = ("end",)) -> Lifecycle:
    return Lifecycle(name="fed", states=states, edges=edges, initial=initial, finals=finals, feeds=feeds)


def _items(*extra: Edge, **states: State) -> Lifecycle:
    """start opens d -> step takes it -> end closes it; ``states`` replace states by name,
    ``extra`` edges go first."""
    base = {"start": State("start", opens="d"), "step": State("step", takes="d", item="d"),
            "end": State("end", closes="d")}
    base.update(states)
    return _fed(tuple(base.values()), (*extra, Edge("start", "step", guard="more"), Edge("start", "end"),
                                      Edge("step", "step", "loop", guard="more", label="d"), Edge("step", "end")))


class Collect(LifecycleTrainer):
    lifecycle = _items()

    def get_trainloader(self) -> None:
        self.train_loader = [1, 2, 3]

    def build_model(self) -> None:
        self.got: list[object] = []

    def step(self, item: object) -> None:
        self.got.append(item)


def test_a_taking_state_gets_every_item_of_the_pass() -> None:
    """The shape the rules below ask for: the feed opens before, every edge into the taking
    state carries the feed's guard, the pass closes after the loop's fallback."""
    trainer = Collect()
    trainer.run()
    assert trainer.got == [1, 2, 3]


def test_an_edge_into_a_taking_state_without_the_feeds_guard_is_refused() -> None:
    """No lookahead ran on that edge: the state would take the runtime's placeholder."""
    with pytest.raises(SpecError, match=r"^lifecycle 'fed' is invalid \(1 problem\):\n  - edge start -> step "
                       r"enters 'step', which takes feed 'd', without the feed's guard 'more': .*add 'more' to the "
                       r"edge's guard="):
        _fed((State("start", opens="d"), State("step", takes="d", item="d"), State("end", closes="d")),
             (Edge("start", "step"), Edge("step", "step", "loop", guard="more", label="d"), Edge("step", "end")))


def test_a_control_edge_into_a_taking_state_needs_the_feeds_guard_too() -> None:
    """A skip edge back to the taking state must ask for the next item like the loop does."""
    skip = Edge("step", "step", "control", guard="skip_requested", reason="skip the item")
    with pytest.raises(SpecError, match=r"edge step -> step if skip_requested enters 'step', which takes feed 'd', "
                       r"without the feed's guard 'more'"):
        _items(skip)
    assert _items(attrs.evolve(skip, guard=("skip_requested", "more")))


def test_the_initial_state_cannot_take() -> None:
    """A run starts at the initial state: no edge's guard fetched an item for it."""
    with pytest.raises(SpecError, match=r"state 'step' is the initial state but takes feed 'd': .*begin at a "
                       r"state that opens='d'"):
        _fed((State("step", opens="d", takes="d"), State("end", closes="d")),
             (Edge("step", "step", "loop", guard="more", label="d"), Edge("step", "end")), initial="step")


def test_a_state_that_opens_or_closes_the_feed_it_takes_is_refused_with_the_split() -> None:
    """Opening (or closing) the pass is done before the take and discards the fetched item."""
    with pytest.raises(SpecError, match=r"state 'epoch' both opens and takes feed 'd': opening the pass \(done first\) "
                       r"discards the item the guard 'more' fetched on edge start -> epoch if epochs_remaining and "
                       r"more, .*split it: keep opens='d' on 'epoch' and move takes='d' \(and item=\) to a new state "
                       r"entered from 'epoch' on an edge guarded by 'more'"):
        _fed((State("start"), State("epoch", roles={"epoch_start"}, opens="d", takes="d", item="d"),
              State("end", roles={"epoch_end"}, closes="d")),
             (Edge("start", "epoch", guard=("epochs_remaining", "more")), Edge("start", "end"),
              Edge("epoch", "epoch", "loop", guard=("epochs_remaining", "more"), label="d"), Edge("epoch", "end")))
    with pytest.raises(SpecError, match=r"state 'step' both closes and takes feed 'd': closing the pass .*split "
                       r"it: keep takes='d' on 'step' and move closes='d' to a new state its loop exits to"):
        _items(step=State("step", takes="d", item="d", closes="d"), end=State("end"))


def test_a_feed_taken_before_it_is_opened_is_refused_with_the_path() -> None:
    """opens= on a state reached only after the taking one: the first take reads a pass nobody opened."""
    with pytest.raises(SpecError, match=r"state 'step' takes feed 'd' before any state opens it, on the path "
                       r"start -> step \(opens='d' is on 'mid'\); give a state that every path passes before 'step' "
                       r"opens='d'"):
        _fed((State("start"), State("step", takes="d", item="d"), State("mid", opens="d"), State("end", closes="d")),
             (Edge("start", "step", guard="more"), Edge("start", "end"), Edge("step", "mid"),
              Edge("mid", "step", "loop", guard="more", label="d"), Edge("mid", "end")))


def test_a_feed_taken_again_after_its_pass_closed_is_refused() -> None:
    """Closing ends the pass: a loop back to the taking state must pass a state that opens it again."""
    with pytest.raises(SpecError, match=r"state 'step' takes feed 'd' after the pass closed at 'close' and before "
                       r"it is opened again, on the path start -> step -> close -> step"):
        _fed((State("start", opens="d"), State("step", takes="d", item="d"), State("close", closes="d"),
              State("end")),
             (Edge("start", "step", guard="more"), Edge("start", "end"), Edge("step", "close"),
              Edge("close", "step", "loop", guard="more", label="d"), Edge("close", "end")))


def test_a_state_receiving_an_item_before_any_was_taken_is_refused() -> None:
    """item= before the pass's first take hands the hook None (or the last pass's item)."""
    with pytest.raises(SpecError, match=r"state 'use' receives the item of feed 'd' \(item='d'\) but no item was "
                       r"taken since the pass opened at 'start', on the path start -> use; .*enter it only after a state that takes='d'"):
        _fed((State("start", opens="d"), State("use", item="d"), State("step", takes="d"), State("end", closes="d")),
             (Edge("start", "use"), Edge("use", "step", guard="more"), Edge("use", "end"),
              Edge("step", "step", "loop", guard="more", label="d"), Edge("step", "end")))


def _grab_then_use(*between: str, resumable: str = "grab") -> Lifecycle:
    """start opens d -> grab takes it -> ``between`` -> use receives it -> loop or end."""
    chain = ("grab", *between, "use")
    states = (State("start", opens="d"), *(State(n, takes="d" if n == "grab" else None, item="d" if n == "use"
                                                  else None, roles={"resumable"} if n == resumable else None)
                                           for n in chain), State("done", roles={"resumable"}),
              State("end", closes="d"))
    return _fed(states, (
        Edge("start", "grab", guard="more"), Edge("start", "end"),
        *(Edge(a, b) for a, b in zip(chain, chain[1:])),
        Edge("use", "done"), Edge("done", "grab", "loop", guard="more", label="d"), Edge("done", "end"),
    ))


@pytest.mark.parametrize(
    ("between", "resumable", "path"),
    [((), "grab", "grab -> use"), (("mid",), "grab", "grab -> mid -> use"),
     (("mid", "late"), "mid", "mid -> late -> use")],
)
def test_a_resumable_state_with_an_item_in_flight_is_refused_along_any_path(
    between: tuple[str, ...], resumable: str, path: str,
) -> None:
    """The item is in flight from the take to its last use; a checkpoint there does not hold it,
    so a resume would hand the using state None — however many states lie between."""
    with pytest.raises(SpecError, match=rf"state '{resumable}' is resumable but 'use' after it receives the item in "
                       rf"flight of feed 'd' \(path {path}, no new item taken\): .*drop 'resumable' from "
                       rf"'{resumable}'"):
        _grab_then_use(*between, resumable=resumable)
    assert _grab_then_use(*between, resumable="done"), "resumable after the item's last use is fine"


def test_a_resumable_state_before_the_next_take_is_fine() -> None:
    """The search stops at the next take of the feed: the built-ins' batch end is resumable."""
    assert _items(step=State("step", takes="d", item="d", roles={"resumable"}))
    for spec in (*lifecycles.BUILTIN.values(), *lifecycles.GAN.values()):
        assert Lifecycle.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("guards", "match"),
    [
        (("g", "g"), r"feeds 'x' and 'y' share the guard 'g': the runtime answers it from feed 'x' only, so feed "
                     r"'y' would never be read; give each feed a guard of its own \(guard='has_next_y'\)"),
        (("g", "skip_requested"), r"feed 'y' has guard 'skip_requested', which is a control request guard"),
        (("g", "epochs_remaining"), r"feed 'y' has guard 'epochs_remaining', which is the epoch counter's guard"),
        (("g", "loop_overridden"), r"feed 'y' has guard 'loop_overridden', which is the guard of compound 'loop'"),
    ],
)
def test_a_feed_guard_must_be_its_own(guards: tuple[str, str], match: str) -> None:
    """The runtime answers a guard name from one source: control, epochs and overrides first,
    then the first feed with it; any other feed with that guard would never be read."""
    gx, gy = guards
    states = (State("start"), State("loop", compound=True), State("ox", opens="x", parent="loop"),
              State("tx", takes="x", parent="loop"), State("oy", opens="y", parent="loop"),
              State("ty", takes="y", parent="loop"), State("end"))
    edges = (Edge("start", "loop"), Edge("loop", "ox", "descend"), Edge("ox", "tx", guard=gx), Edge("ox", "oy"),
             Edge("tx", "oy"), Edge("oy", "ty", guard=gy), Edge("oy", "end"), Edge("ty", "end"))
    feeds = (Feed("x", guard=gx, loader="lx"), Feed("y", guard=gy, loader="ly"))
    with pytest.raises(SpecError, match=match):
        _fed(states, edges, feeds)
    assert _fed(states, tuple(attrs.evolve(e, guard="h") if e.target == "ty" else e for e in edges),
                (feeds[0], Feed("y", guard="h", loader="ly")))


def test_nested_feeds_are_tracked_each_on_its_own() -> None:
    """An outer item stays valid across an inner feed's loop; the inner pass reopens per outer
    item; the states after the inner loop that hold no item are resumable."""
    spec = _fed(
        (State("start", opens="outer"), State("take_outer", takes="outer", item="outer"),
         State("open_inner", opens="inner"), State("take_inner", takes="inner", item="inner"),
         State("close_inner", closes="inner"), State("use_outer", item="outer"),
         State("next_outer", roles={"resumable"}), State("end", closes="outer", roles={"resumable"})),
        (Edge("start", "take_outer", guard="more_outer"), Edge("start", "end"),
         Edge("take_outer", "open_inner"), Edge("open_inner", "take_inner", guard="more_inner"),
         Edge("open_inner", "close_inner"),
         Edge("take_inner", "take_inner", "loop", guard="more_inner", label="inner"), Edge("take_inner", "close_inner"),
         Edge("close_inner", "use_outer"), Edge("use_outer", "next_outer"),
         Edge("next_outer", "take_outer", "loop", guard="more_outer", label="outer"), Edge("next_outer", "end")),
        (Feed("outer", guard="more_outer", loader="lo"), Feed("inner", guard="more_inner", loader="li")),
    )
    assert spec.state("take_inner").takes == "inner"
    with pytest.raises(SpecError, match=r"state 'close_inner' is resumable but 'use_outer' after it receives the "
                       r"item in flight of feed 'outer' \(path close_inner -> use_outer"):
        _fed(tuple(attrs.evolve(s, roles={"resumable"}) if s.name == "close_inner" else s for s in spec.states),
             spec.edges, spec.feeds)


def test_the_example_lifecycles_validate() -> None:
    """The custom lifecycles shipped as examples build (validated on import) and round-trip."""
    for name in ("gan_lifecycle", "grad_accumulation"):
        found = [v for v in runpy.run_path(str(EXAMPLES / f"{name}.py")).values() if isinstance(v, Lifecycle)]
        assert found, name
        assert all(Lifecycle.from_dict(spec.to_dict()) == spec for spec in found)
