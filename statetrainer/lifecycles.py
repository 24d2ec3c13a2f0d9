"""The lifecycles of farabio's trainers, as data — the only module that names their states.

``TRAIN``, ``EVALUATE`` and ``TEST`` are farabio's ``ConvnetTrainer``: exactly the states
of the seed's diagrams (``diagrams/*.dot``) and every seed edge with its loop label.
``TRAIN`` holds ``EVALUATE`` nested at ``evaluate_epoch`` (its body states have
``region="evaluate"``). ``GAN_TRAIN``, ``GAN_EVALUATE`` and ``GAN_TEST`` are farabio's
``GanTrainer``: the same skeleton, with the discriminator's and the generator's four
steps as states of each training batch.

Every state declares its runtime roles (:mod:`statetrainer.roles`): the epoch opens at
``on_train_epoch_start`` and closes at ``on_epoch_end``; the ``train`` feed is opened
there, taken by ``on_start_training_batch`` and counts steps; ``on_end_training_batch``
ends a training item; ``evaluate_epoch`` runs its body without grad and opens the
``valid`` feed; the resumable states are those with no item in flight.

Edges the seed leaves implicit are declared with their reason:

* **return realisations**: the seed draws returns from compound nodes
  (``train_batch -> on_train_epoch_end``). When the body ran, the machine leaves from the
  body's last state; those edges have ``drawn_from`` set to the compound, so they are the
  seed's return edge, realised. When the body never runs (zero epochs, an empty
  iterable) the machine takes the drawn edge itself.
* **extension**: evaluation not due this epoch; an empty validation iterable.
* **control**: a stop request (``stop()``, ``stop_train()``, ``exit_trainer()``), a
  stop of the epoch, a skipped batch (``skip_batch()`` or farabio's ``_next_loop``).
* **override**: a compound hook (``train_loop``, ``train_epoch``, ``train_batch``,
  ``evaluate_epoch``, ``test_loop``) overridden by the trainer runs the body itself.
"""

from __future__ import annotations

from typing import Any

import attrs

from statetrainer._errors import ConfigurationError
from statetrainer.spec import Edge, EpochCounter, Feed, Guard, Lifecycle, State

STOP = "stop requested (stop(), stop_train(), exit_trainer() or a signal): end gracefully"
STOP_EPOCH = "stop_epoch() requested: the rest of this epoch's batches are skipped"
SKIP = "skip_batch() requested: the rest of this batch's states are skipped"
SKIP_EVAL = "this evaluation item is skipped (farabio's _next_loop, or skip_batch())"
OVERRIDE = "{hook}() is overridden: the override ran the body, the machine returns"

RESUMABLE = frozenset({"resumable"})

TRAIN_FEED = Feed(
    "train", guard="has_next_batch", iterable="train_epoch_iter", loader="train_loader", counts_steps=True,
    doc="training items: train_epoch_iter when a hook set it, else train_loader",
)
VALID_FEED = Feed(
    "valid", guard="has_next_valid_batch", iterable="valid_epoch_iter", loader="valid_loader",
    skip_flag="_next_loop", doc="validation items: valid_epoch_iter when a hook set it, else valid_loader",
)
TEST_FEED = Feed(
    "test", guard="has_next_test_batch", iterable="test_loop_iter", loader="test_loader",
    doc="test items: test_loop_iter when a hook set it, else test_loader",
)


def _stop(source: str, target: str) -> Edge:
    return Edge(source, target, "control", guard="stop_requested", reason=STOP)


def _stop_epoch(source: str, target: str, reason: str = STOP_EPOCH) -> Edge:
    return Edge(source, target, "control", guard="epoch_stop_requested", reason=reason)


def _skip(source: str, first: str, done: str, has_next: str, reason: str) -> tuple[Edge, ...]:
    return (
        Edge(source, first, "control", guard=("skip_requested", has_next), reason=reason),
        Edge(source, done, "control", guard="skip_requested", reason=reason),
    )


def _override(source: str, target: str, hook: str, drawn_from: str | None = None) -> Edge:
    return Edge(
        source, target, "override", guard=f"{hook}_overridden",
        drawn_from=drawn_from, reason=OVERRIDE.format(hook=hook),
    )


def _nest(states: tuple[State, ...], parents: dict[str, str]) -> tuple[State, ...]:
    names = {s.name for s in states}
    return tuple(
        attrs.evolve(s, parent=parents[s.name]) if parents.get(s.name) in names else s for s in states
    )


# -- guards answered by the trainer's farabio attributes --------------------------------


def _int_at_least(trainer: Any, attr: str, low: int, hint: str) -> None:
    value = getattr(trainer, attr, None)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        bound = "a non-negative int" if low == 0 else f"an int >= {low}"
        raise ConfigurationError(f"{type(trainer).__name__}.{attr} must be {bound}, got {value!r}; {hint}")


def _check_eval_interval(trainer: Any) -> None:
    if trainer._has_eval:
        _int_at_least(trainer, "_eval_interval", 1, "set it in define_train_attr (or set _has_eval = False)")


EVAL_DUE = Guard(
    "eval_due", "_has_eval and _epoch % _eval_interval == 0",
    predicate=lambda t: bool(t._has_eval) and t._epoch % t._eval_interval == 0,
    check=_check_eval_interval,
)
GAN_EVAL_DUE = Guard(
    "eval_due", "_has_eval (farabio's GanTrainer evaluates every epoch)", predicate=lambda t: bool(t._has_eval),
)
DATA_PARALLEL = Guard("data_parallel", "_data_parallel is truthy", predicate=lambda t: bool(t._data_parallel))


def check_epoch_counter(trainer: Any, spec: Lifecycle) -> None:
    """The epoch counter's ``total`` and ``first`` attributes must be non-negative ints."""
    for attr in (spec.epochs.total, spec.epochs.first):
        _int_at_least(trainer, attr, 0, "set it in define_train_attr")


# -- evaluate ----------------------------------------------------------------------


def _evaluate_body(item_on_start: bool) -> tuple[State, ...]:
    return (
        State("on_evaluate_epoch_start", 5, region="evaluate", roles=RESUMABLE),
        State("on_evaluate_epoch_end", 5, region="evaluate", roles=RESUMABLE),
        State("on_evaluate_batch_start", 6, region="evaluate", takes="valid",
              item="valid" if item_on_start else None),
        State("evaluate_batch", 6, region="evaluate", item="valid"),
        State("on_evaluate_batch_end", 6, region="evaluate", roles=RESUMABLE),
    )


_EVALUATE_COMPOUND = State("evaluate_epoch", 4, compound=True, dashed=True, roles={"no_grad"}, opens="valid")

_EVALUATE_PARENTS = {
    "on_evaluate_epoch_start": "evaluate_epoch", "on_evaluate_epoch_end": "evaluate_epoch",
    "on_evaluate_batch_start": "evaluate_epoch", "evaluate_batch": "evaluate_epoch",
    "on_evaluate_batch_end": "evaluate_epoch",
}


def _evaluate_edges(stop_target: str) -> tuple[Edge, ...]:
    end, first, nxt = "on_evaluate_epoch_end", "on_evaluate_batch_start", VALID_FEED.guard

    def batch_controls(s: str) -> tuple[Edge, ...]:
        return (
            _stop(s, stop_target),
            _stop_epoch(s, end, "stop_epoch() requested: the rest of this evaluation is skipped"),
            *_skip(s, first, end, nxt, SKIP_EVAL),
        )

    return (
        _stop("on_evaluate_epoch_start", stop_target),
        _stop_epoch("on_evaluate_epoch_start", end, "stop_epoch() requested: evaluation is skipped"),
        Edge("on_evaluate_epoch_start", first, "sequence", guard=nxt),
        Edge("on_evaluate_epoch_start", end, "extension",
             reason="the validation iterable is empty: no evaluation batch runs"),
        *batch_controls(first),
        Edge(first, "evaluate_batch"),
        *batch_controls("evaluate_batch"),
        Edge("evaluate_batch", "on_evaluate_batch_end"),
        _stop("on_evaluate_batch_end", stop_target),
        _stop_epoch("on_evaluate_batch_end", end, "stop_epoch() requested: evaluation ends"),
        Edge("on_evaluate_batch_end", first, "loop", guard=nxt, label="valid_epoch_iter"),
        Edge("on_evaluate_batch_end", end, "sequence"),
    )


def _evaluate(graph_name: str, item_on_start: bool, doc: str) -> Lifecycle:
    return Lifecycle(
        name="evaluate",
        states=_nest((_EVALUATE_COMPOUND, *_evaluate_body(item_on_start)), _EVALUATE_PARENTS),
        edges=(
            _stop("evaluate_epoch", "on_evaluate_epoch_end"),
            Edge("evaluate_epoch", "on_evaluate_epoch_start", "descend"),
            *_evaluate_edges(stop_target="on_evaluate_epoch_end"),
        ),
        initial="evaluate_epoch",
        finals=("on_evaluate_epoch_end",),
        feeds=(VALID_FEED,),
        colorscheme="set36",
        graph_name=graph_name,
        doc=doc,
    )


EVALUATE = _evaluate(
    "Evalloop", item_on_start=True,
    doc="One evaluation epoch, all under torch.no_grad(); nested in train at evaluate_epoch.",
)


# -- train -------------------------------------------------------------------------

_TRAIN_END = "on_train_end"
_EPOCH_END = "on_train_epoch_end"
_BATCH_START, _BATCH_END = "on_start_training_batch", "on_end_training_batch"


def _batch_controls(source: str) -> tuple[Edge, ...]:
    return (
        _stop(source, _TRAIN_END),
        _stop_epoch(source, _EPOCH_END),
        *_skip(source, _BATCH_START, _EPOCH_END, TRAIN_FEED.guard, SKIP),
    )


def _train_edges(steps: tuple[str, ...]) -> tuple[Edge, ...]:
    """The train lifecycle's edges; ``steps`` are the states between a batch's start and end."""
    chain = (_BATCH_START, *steps, _BATCH_END)
    batch = tuple(
        edge for a, b in zip(chain, chain[1:]) for edge in (*_batch_controls(a), Edge(a, b))
    )
    return (
        _stop("train", _TRAIN_END),
        Edge("train", "on_train_start"),
        _stop("on_train_start", _TRAIN_END),
        Edge("on_train_start", "start_logger"),
        _stop("start_logger", _TRAIN_END),
        Edge("start_logger", "train_loop"),
        _stop("train_loop", _TRAIN_END),
        _override("train_loop", _TRAIN_END, "train_loop"),
        Edge("train_loop", "train_epoch", "descend", guard="epochs_remaining"),
        Edge("train_loop", _TRAIN_END, "return",
             reason="no epoch to run (_num_epochs is 0 or _start_epoch is past it)"),
        _stop("train_epoch", _TRAIN_END),
        _override("train_epoch", _TRAIN_END, "train_epoch", drawn_from="train_loop"),
        Edge("train_epoch", "on_train_epoch_start", "descend"),
        _stop("on_train_epoch_start", _TRAIN_END),
        _stop_epoch("on_train_epoch_start", _EPOCH_END),
        Edge("on_train_epoch_start", "train_batch"),
        _stop("train_batch", _TRAIN_END),
        _stop_epoch("train_batch", _EPOCH_END),
        _override("train_batch", _EPOCH_END, "train_batch"),
        Edge("train_batch", _BATCH_START, "descend", guard=TRAIN_FEED.guard),
        Edge("train_batch", _EPOCH_END, "return", reason="the training iterable is empty"),
        *batch,
        _stop(_BATCH_END, _TRAIN_END),
        _stop_epoch(_BATCH_END, _EPOCH_END),
        Edge(_BATCH_END, _BATCH_START, "loop", guard=TRAIN_FEED.guard, label="train_epoch_iter"),
        Edge(_BATCH_END, _EPOCH_END, "return", drawn_from="train_batch"),
        _stop(_EPOCH_END, _TRAIN_END),
        Edge(_EPOCH_END, "evaluate_epoch", guard="eval_due"),
        Edge(_EPOCH_END, "on_epoch_end", "extension",
             reason="evaluation not due: _has_eval is false or _epoch % _eval_interval != 0"),
        _stop("evaluate_epoch", _TRAIN_END),
        _override("evaluate_epoch", "on_epoch_end", "evaluate_epoch"),
        Edge("evaluate_epoch", "on_evaluate_epoch_start", "descend"),
        *_evaluate_edges(stop_target=_TRAIN_END),
        _stop("on_evaluate_epoch_end", _TRAIN_END),
        Edge("on_evaluate_epoch_end", "on_epoch_end", "return", drawn_from="evaluate_epoch"),
        _stop("on_epoch_end", _TRAIN_END),
        Edge("on_epoch_end", "on_train_epoch_start", "loop",
             guard="epochs_remaining", label="_num_epochs"),
        Edge("on_epoch_end", _TRAIN_END, "return", drawn_from="train_loop"),
    )


def _train_parents(steps: tuple[str, ...]) -> dict[str, str]:
    return {
        "on_train_start": "train", "start_logger": "train", "train_loop": "train", _TRAIN_END: "train",
        "train_epoch": "train_loop",
        "on_train_epoch_start": "train_epoch", "train_batch": "train_epoch", _EPOCH_END: "train_epoch",
        "evaluate_epoch": "train_epoch", "on_epoch_end": "train_epoch",
        _BATCH_START: "train_batch", **{s: "train_batch" for s in steps}, _BATCH_END: "train_batch",
        **_EVALUATE_PARENTS,
    }


def _train(
    steps: tuple[str, ...], eval_due: Guard, epochs: EpochCounter, item_on_eval_start: bool,
    graph_name: str, doc: str,
) -> Lifecycle:
    states = (
        State("train", 1, compound=True),
        State("on_train_start", 2, roles=RESUMABLE),
        State("start_logger", 2, roles=RESUMABLE),
        State("train_loop", 2, compound=True),
        State(_TRAIN_END, 2, roles=RESUMABLE),
        State("train_epoch", 3, compound=True),
        State("on_train_epoch_start", 4, roles={"epoch_start", "resumable"}, opens="train"),
        State("train_batch", 4, compound=True, item="train"),
        State(_EPOCH_END, 4, roles=RESUMABLE, closes="train"),
        _EVALUATE_COMPOUND,
        State("on_epoch_end", 4, roles={"epoch_end", "resumable"}),
        State(_BATCH_START, 5, takes="train", item="train"),
        *(State(s, 5) for s in steps),
        State(_BATCH_END, 5, roles={"batch_end", "resumable"}),
        *_evaluate_body(item_on_eval_start),
    )
    return Lifecycle(
        name="train",
        states=_nest(states, _train_parents(steps)),
        edges=_train_edges(steps),
        initial="train",
        finals=(_TRAIN_END,),
        guards=(eval_due,),
        feeds=(TRAIN_FEED, VALID_FEED),
        epochs=epochs,
        colorscheme="set36",
        graph_name=graph_name,
        doc=doc,
    )


TRAIN = _train(
    ("training_step",), EVAL_DUE, EpochCounter(), item_on_eval_start=True, graph_name="Trainloop",
    doc="farabio's training lifecycle, with evaluation nested at evaluate_epoch.",
)


# -- test --------------------------------------------------------------------------

_TEST_END = "on_test_end"


def _test_batch_controls(source: str) -> tuple[Edge, ...]:
    return (
        _stop(source, _TEST_END),
        _stop_epoch(source, _TEST_END, "stop_epoch() requested: the rest of the test loop is skipped"),
        *_skip(source, "on_start_test_batch", _TEST_END, TEST_FEED.guard, SKIP),
    )


def _test(parallel_choice: bool, graph_name: str, doc: str) -> Lifecycle:
    loads = ("load_parallel_model", "load_model") if parallel_choice else ("load_model",)
    load_edges: tuple[Edge, ...] = (
        (Edge("test", "load_parallel_model", "choice", guard="data_parallel"), Edge("test", "load_model", "choice"))
        if parallel_choice else (Edge("test", "load_model"),)
    )
    parents = {name: "test" for name in (*loads, "on_test_start", "test_loop", _TEST_END)}
    parents.update({s: "test_loop" for s in ("on_start_test_batch", "test_step", "on_end_test_batch")})
    return Lifecycle(
        name="test",
        states=_nest((
            State("test", 1, compound=True),
            *(State(name, 2) for name in sorted(loads)),
            State("on_test_start", 2),
            State("test_loop", 2, compound=True, opens="test"),
            State(_TEST_END, 2),
            State("on_start_test_batch", 3, takes="test"),
            State("test_step", 3, item="test"),
            State("on_end_test_batch", 3),
        ), parents),
        edges=(
            _stop("test", _TEST_END),
            *load_edges,
            *(e for name in sorted(loads) for e in (_stop(name, _TEST_END), Edge(name, "on_test_start"))),
            _stop("on_test_start", _TEST_END),
            Edge("on_test_start", "test_loop"),
            _stop("test_loop", _TEST_END),
            _override("test_loop", _TEST_END, "test_loop"),
            Edge("test_loop", "on_start_test_batch", "descend", guard=TEST_FEED.guard),
            Edge("test_loop", _TEST_END, "return", reason="the test iterable is empty"),
            *_test_batch_controls("on_start_test_batch"),
            Edge("on_start_test_batch", "test_step"),
            *_test_batch_controls("test_step"),
            Edge("test_step", "on_end_test_batch"),
            _stop("on_end_test_batch", _TEST_END),
            _stop_epoch("on_end_test_batch", _TEST_END, "stop_epoch() requested: the test loop ends"),
            Edge("on_end_test_batch", "on_start_test_batch", "loop",
                 guard=TEST_FEED.guard, label="test_loop_iter"),
            Edge("on_end_test_batch", _TEST_END, "return", drawn_from="test_loop"),
        ),
        initial="test",
        finals=(_TEST_END,),
        guards=(DATA_PARALLEL,) if parallel_choice else (),
        feeds=(TEST_FEED,),
        colorscheme="set33",
        graph_name=graph_name,
        doc=doc,
    )


TEST = _test(True, "Testloop", "farabio's test lifecycle: load the model, then loop over the test items.")

#: The built-in lifecycles of ConvnetTrainer by name.
BUILTIN: dict[str, Lifecycle] = {"train": TRAIN, "evaluate": EVALUATE, "test": TEST}


# -- farabio's GanTrainer -------------------------------------------------------------

#: The eight states of a GAN training batch, in farabio's order.
GAN_STEPS = (
    "discriminator_zero_grad", "discriminator_loss", "discriminator_backward", "discriminator_optim_step",
    "generator_zero_grad", "generator_loss", "generator_backward", "generator_optim_step",
)

GAN_TRAIN = _train(
    GAN_STEPS, GAN_EVAL_DUE, EpochCounter(attr="epoch"), item_on_eval_start=False, graph_name="GanTrainloop",
    doc="farabio's GanTrainer training lifecycle: per batch the discriminator's four steps, then the "
        "generator's; evaluation every epoch when _has_eval; the epoch in self.epoch.",
)
GAN_EVALUATE = _evaluate(
    "GanEvalloop", item_on_start=False,
    doc="farabio's GanTrainer evaluation: on_evaluate_batch_start() takes no item; all under torch.no_grad().",
)
GAN_TEST = _test(False, "GanTestloop", "farabio's GanTrainer test lifecycle: load_model, then the test items.")

#: The lifecycles of GanTrainer by name.
GAN: dict[str, Lifecycle] = {"train": GAN_TRAIN, "evaluate": GAN_EVALUATE, "test": GAN_TEST}


def get(name: str) -> Lifecycle:
    """The built-in lifecycle called ``name`` (``train``, ``evaluate`` or ``test``)."""
    from statetrainer._errors import UnknownStateError

    try:
        return BUILTIN[name]
    except KeyError:
        raise UnknownStateError(name, BUILTIN, what="lifecycle") from None
