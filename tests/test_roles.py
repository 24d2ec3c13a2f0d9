"""Roles in the spec: validated when declared, the only source of the runtime's meaning."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from statetrainer import (
    EPOCH_END,
    ConfigurationError,
    Edge,
    Feed,
    Guard,
    Lifecycle,
    LifecycleTrainer,
    SpecError,
    State,
    lifecycles,
    with_stop_edges,
)
from statetrainer.roles import ROLES, Role

PACKAGE = Path(__file__).parent.parent / "statetrainer"


def _loop(**changes: object) -> Lifecycle:
    """A small valid lifecycle with every role; ``changes`` replace its arguments."""
    states = (
        State("start", roles={"resumable"}),
        State("epoch", roles={"epoch_start", "resumable"}, opens="data"),
        State("item", takes="data", item="data"),
        State("after", roles={"batch_end", "resumable"}),
        State("close", roles={"epoch_end", "resumable"}, closes="data"),
        State("done", roles={"resumable"}),
    )
    edges = (
        Edge("start", "epoch", guard="epochs_remaining"),
        Edge("start", "done", "extension", reason="no epoch"),
        Edge("epoch", "item", guard="more"),
        Edge("epoch", "close", "extension", reason="no data"),
        Edge("item", "after"),
        Edge("after", "item", "loop", guard="more", label="items"),
        Edge("after", "close"),
        Edge("close", "epoch", "loop", guard="epochs_remaining", label="epochs"),
        Edge("close", "done"),
    )
    args: dict[str, object] = {
        "name": "loop", "states": states, "edges": edges, "initial": "start", "finals": ("done",),
        "feeds": (Feed("data", guard="more", loader="train_loader", counts_steps=True),),
    }
    args.update(changes)
    return Lifecycle(**args)  # type: ignore[arg-type]


def test_a_lifecycle_with_every_role_is_valid_and_round_trips_as_data() -> None:
    """The roles, feeds and runtime guards survive to_dict/from_dict; the fingerprint covers roles."""
    spec = _loop()
    assert spec.runtime_guards == ("more", "epochs_remaining")
    again = Lifecycle.from_dict(spec.to_dict())
    assert again == spec and again.fingerprint() == spec.fingerprint()
    moved = _loop(states=tuple(
        State(s.name, roles=s.roles - {"resumable"}, opens=s.opens, takes=s.takes, item=s.item, closes=s.closes)
        if s.name == "start" else s for s in spec.states
    ))
    assert moved.fingerprint() != spec.fingerprint(), "a role edit changes the fingerprint"


def test_every_role_problem_is_listed_in_one_error_with_suggestions() -> None:
    """Unknown feed/role, an epoch that never closes, an item in flight after a resumable
    state, two counting feeds and a guard the runtime answers: all reported at once."""
    states = (
        State("start", roles={"resumable", "resumabel"}),
        State("epoch", roles={"epoch_start"}, opens="dat"),
        State("item", takes="data", item="data"),
        State("use", item="data", roles={"resumable"}),
        State("after", roles={"batch_end", "resumable"}),
        State("done"),
    )
    edges = (
        Edge("start", "epoch", guard="epochs_remaining"),
        Edge("start", "done"),
        Edge("epoch", "item", guard="more"),
        Edge("epoch", "done"),
        Edge("item", "use"),
        Edge("use", "after"),
        Edge("after", "use", "loop", guard="more", label="x"),
        Edge("after", "done"),
    )
    with pytest.raises(SpecError) as info:
        Lifecycle("bad", states, edges, "start", ("done",), guards=(Guard("more", "declared twice"),),
                  feeds=(Feed("data", guard="more", loader="l", counts_steps=True),
                         Feed("other", guard="other_next", loader="m", counts_steps=True)))
    problems = "\n".join(info.value.problems)
    expected = [
        r"state 'start' names unknown role 'resumabel'; did you mean 'resumable'\?",
        r"state 'epoch' opens= names unknown feed 'dat'; did you mean 'data'\?",
        r"feed 'data' is never opened",
        r"feed 'other' is never opened",
        r"the epoch opened at 'epoch' never closes: give a state roles=\{'epoch_end'\}",
        r"state 'after' is resumable but 'use' after it receives the item in flight of feed 'data'",
        r"feeds \['data', 'other'\] all count steps",
        r"guard 'more' is answered by the runtime",
    ]
    for pattern in expected:
        assert re.search(pattern, problems), (pattern, problems)
    assert len(info.value.problems) >= len(expected)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"feeds": ()}, r"unknown feed 'data'"),
        ({"feeds": (Feed("data", guard="more", loader="train_loader"),)}, r"role 'batch_end' but no feed counts steps"),
        ({"feeds": (Feed("data", guard="more"),)}, r"feed 'data' reads nothing"),
    ],
)
def test_feed_declarations_are_checked(changes: dict[str, object], match: str) -> None:
    """A feed that is missing, counts no steps where batch_end needs one, or reads nothing."""
    with pytest.raises(SpecError, match=match):
        _loop(**changes)


def test_epochs_guard_needs_an_epoch_start() -> None:
    """epochs_remaining is answered by the epoch counter: without epoch_start it is an unknown guard."""
    spec = _loop()
    states = tuple(State(s.name, roles=s.roles - {"epoch_start", "epoch_end"}, opens=s.opens, takes=s.takes,
                         item=s.item, closes=s.closes) for s in spec.states)
    with pytest.raises(SpecError, match=r"unknown guard 'epochs_remaining'"):
        _loop(states=states)


def test_builtin_lifecycles_declare_the_roles_the_runtime_needs() -> None:
    """Epoch opens/closes, the step-counting train feed, batch end, the no-grad evaluation."""
    train = lifecycles.TRAIN
    assert train.with_role("epoch_start") == ("on_train_epoch_start",)
    assert train.with_role("epoch_end") == ("on_epoch_end",)
    assert train.with_role("batch_end") == ("on_end_training_batch",)
    assert [f.name for f in train.feeds if f.counts_steps] == ["train"]
    assert train.no_grad_states() == {"evaluate_epoch", *train.region_states("evaluate")}
    assert set(train.with_role("resumable")) >= {"on_end_training_batch", "on_epoch_end", "on_evaluate_batch_end"}
    assert not lifecycles.TEST.with_role("resumable")
    gan = lifecycles.GAN_TRAIN
    assert gan.epochs.attr == "epoch" and set(lifecycles.GAN_STEPS) <= set(gan.body("train_batch"))


def _quoted_builtin_state_names_outside_lifecycles() -> list[str]:
    names = {n for spec in (*lifecycles.BUILTIN.values(), *lifecycles.GAN.values()) for n in spec.state_names}
    names -= {"train", "test"}  # also the lifecycles' names
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "lifecycles.py":
            continue
        text = path.read_text()
        for name in names:
            for quote in ('"', "'"):
                if f"{quote}{name}{quote}" in text:
                    found.append(f"{path.relative_to(PACKAGE)}: {name}")
    return found


def test_the_runtime_names_no_builtin_state_outside_lifecycles_py() -> None:
    """The machine is the single source of meaning: no quoted built-in state name in the package
    outside lifecycles.py (the runtime reads roles)."""
    assert _quoted_builtin_state_names_outside_lifecycles() == []


def test_roles_are_documented_and_role_objects_validate() -> None:
    """Every role has a doc line; Role() refuses an unknown name with a suggestion."""
    assert all(ROLES.values())
    with pytest.raises(Exception, match=r"unknown role 'epoch_ends'; did you mean 'epoch_end'"):
        Role("epoch_ends")


NO_EPOCHS = with_stop_edges(Lifecycle(
    name="plain",
    states=(State("begin"), State("work"), State("end")),
    edges=(Edge("begin", "work"), Edge("work", "work", "loop", guard="again", label="w"), Edge("work", "end")),
    initial="begin",
    finals=("end",),
    guards=(Guard("again", "never", predicate=lambda t: False),),
), target="end")


class Plain(LifecycleTrainer):
    lifecycle = NO_EPOCHS


def test_features_needing_a_missing_role_say_which_role() -> None:
    """EarlyStopping, a role callback, checkpoint_every and checkpoint_epochs on a lifecycle
    without the roles they need fail when attached, naming the role — never silence."""
    from statetrainer import EarlyStopping

    trainer = Plain()
    with pytest.raises(ConfigurationError, match=r"lifecycle 'plain' has no state with role 'epoch_end'"):
        trainer.add_callback(EarlyStopping("loss"))
    with pytest.raises(ConfigurationError, match=r"role 'epoch_end'"):
        trainer.on(EPOCH_END, lambda t: None)
    assert trainer._statetrainer.registry.all() == [], "nothing half-registered"
    with pytest.raises(ConfigurationError, match=r"checkpoint_every= needs a state with role 'batch_end'"):
        Plain(checkpoint_every=2, run_dir="unused")
    with pytest.raises(ConfigurationError, match=r"checkpoint_epochs= needs a state with role 'epoch_end'"):
        Plain(checkpoint_epochs=True, run_dir="unused")
    trainer.run()
    assert [e.state for e in trainer.trace] == ["begin", "work", "end"]


def test_a_state_named_like_a_trainer_method_is_a_spec_error() -> None:
    """Entering a state called `log` or `snapshot` would call statetrainer's method: refused when
    the class is defined; overriding the method makes it the state's hook."""
    spec = with_stop_edges(Lifecycle(
        name="clash", states=(State("begin"), State("log"), State("snapshot"), State("end")),
        edges=(Edge("begin", "log"), Edge("log", "snapshot"), Edge("snapshot", "end")),
        initial="begin", finals=("end",),
    ), target="end")
    with pytest.raises(SpecError, match=r"state 'log' is named like statetrainer's ConvnetTrainer.log method"):
        type("Clash", (LifecycleTrainer,), {"lifecycle": spec})
    calls: list[str] = []
    owned = type("Owned", (LifecycleTrainer,), {
        "lifecycle": spec, "log": lambda self: calls.append("log"), "snapshot": lambda self: calls.append("snap"),
    })
    owned().run()
    assert calls == ["log", "snap"]


def test_role_callbacks_count_each_run_afresh() -> None:
    """every=/once= on a role (not a state name) restart with each run too: a second train() of
    the same trainer fires on the same batches and epochs as the first."""
    from farabio_like import TinyTrainer

    from statetrainer import BATCH_END, EPOCH_END

    t = TinyTrainer(epochs=3)
    fired: list[tuple[str, int, int]] = []
    t.on(BATCH_END, lambda tr: fired.append(("every", tr._epoch, tr.global_step)), every=3)
    t.on(EPOCH_END, lambda tr: fired.append(("once", tr._epoch, 0)), once=2)
    t.train()
    first = list(fired)
    fired.clear()
    t.train()
    assert [f[0] for f in first].count("every") == 4 and ("once", 2, 0) in first
    assert [(w, e) for w, e, _ in fired] == [(w, e) for w, e, _ in first]
