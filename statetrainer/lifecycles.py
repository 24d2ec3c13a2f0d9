"""The three lifecycles of farabio's ConvnetTrainer, as data.

``TRAIN``, ``EVALUATE`` and ``TEST`` have exactly the states of the seed's diagrams
(``diagrams/*.dot``) and every seed edge with its loop label. ``TRAIN`` holds
``EVALUATE`` nested at ``evaluate_epoch`` (its body states have ``region="evaluate"``).

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

import attrs

from statetrainer.spec import Edge, Guard, Lifecycle, State

STOP = "stop requested (stop(), stop_train(), exit_trainer() or a signal): end gracefully"
STOP_EPOCH = "stop_epoch() requested: the rest of this epoch's batches are skipped"
SKIP = "skip_batch() requested: the rest of this batch's states are skipped"
SKIP_EVAL = "this evaluation item is skipped (farabio's _next_loop, or skip_batch())"
OVERRIDE = "{hook}() is overridden: the override ran the body, the machine returns"


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


def _overridden_guard(hook: str) -> Guard:
    return Guard(f"{hook}_overridden", f"the trainer overrides {hook}(); the override runs its body")


#: Which compound state's body each state belongs to (the seed's nesting).
PARENTS = {
    "on_train_start": "train", "start_logger": "train", "train_loop": "train", "on_train_end": "train",
    "train_epoch": "train_loop",
    "on_train_epoch_start": "train_epoch", "train_batch": "train_epoch", "on_train_epoch_end": "train_epoch",
    "evaluate_epoch": "train_epoch", "on_epoch_end": "train_epoch",
    "on_start_training_batch": "train_batch", "training_step": "train_batch", "on_end_training_batch": "train_batch",
    "on_evaluate_epoch_start": "evaluate_epoch", "on_evaluate_epoch_end": "evaluate_epoch",
    "on_evaluate_batch_start": "evaluate_epoch", "evaluate_batch": "evaluate_epoch",
    "on_evaluate_batch_end": "evaluate_epoch",
    "load_model": "test", "load_parallel_model": "test", "on_test_start": "test", "test_loop": "test",
    "on_test_end": "test",
    "on_start_test_batch": "test_loop", "test_step": "test_loop", "on_end_test_batch": "test_loop",
}


def _nest(states: tuple[State, ...]) -> tuple[State, ...]:
    names = {s.name for s in states}
    return tuple(
        attrs.evolve(s, parent=PARENTS[s.name]) if PARENTS.get(s.name) in names else s for s in states
    )


# -- evaluate ----------------------------------------------------------------------

_EVALUATE_BODY = (
    State("on_evaluate_epoch_start", 5, region="evaluate"),
    State("on_evaluate_epoch_end", 5, region="evaluate"),
    State("on_evaluate_batch_start", 6, region="evaluate"),
    State("evaluate_batch", 6, region="evaluate"),
    State("on_evaluate_batch_end", 6, region="evaluate"),
)

_EVALUATE_GUARDS = (
    Guard("has_next_valid_batch", "valid_epoch_iter (else valid_loader) yields another item"),
)


def _evaluate_edges(stop_target: str) -> tuple[Edge, ...]:
    end, first, nxt = "on_evaluate_epoch_end", "on_evaluate_batch_start", "has_next_valid_batch"

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


EVALUATE = Lifecycle(
    name="evaluate",
    states=_nest((State("evaluate_epoch", 4, compound=True, dashed=True), *_EVALUATE_BODY)),
    edges=(
        _stop("evaluate_epoch", "on_evaluate_epoch_end"),
        Edge("evaluate_epoch", "on_evaluate_epoch_start", "descend"),
        *_evaluate_edges(stop_target="on_evaluate_epoch_end"),
    ),
    initial="evaluate_epoch",
    finals=("on_evaluate_epoch_end",),
    guards=_EVALUATE_GUARDS,
    colorscheme="set36",
    graph_name="Evalloop",
    doc="One evaluation epoch, all under torch.no_grad(); nested in train at evaluate_epoch.",
)


# -- train -------------------------------------------------------------------------

_TRAIN_END = "on_train_end"
_EPOCH_END = "on_train_epoch_end"


def _batch_controls(source: str) -> tuple[Edge, ...]:
    return (
        _stop(source, _TRAIN_END),
        _stop_epoch(source, _EPOCH_END),
        *_skip(source, "on_start_training_batch", _EPOCH_END, "has_next_batch", SKIP),
    )


_TRAIN_EDGES = (
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
    Edge("train_batch", "on_start_training_batch", "descend", guard="has_next_batch"),
    Edge("train_batch", _EPOCH_END, "return", reason="the training iterable is empty"),
    *_batch_controls("on_start_training_batch"),
    Edge("on_start_training_batch", "training_step"),
    *_batch_controls("training_step"),
    Edge("training_step", "on_end_training_batch"),
    _stop("on_end_training_batch", _TRAIN_END),
    _stop_epoch("on_end_training_batch", _EPOCH_END),
    Edge("on_end_training_batch", "on_start_training_batch", "loop",
         guard="has_next_batch", label="train_epoch_iter"),
    Edge("on_end_training_batch", _EPOCH_END, "return", drawn_from="train_batch"),
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

TRAIN = Lifecycle(
    name="train",
    states=_nest((
        State("train", 1, compound=True),
        State("on_train_start", 2),
        State("start_logger", 2),
        State("train_loop", 2, compound=True),
        State(_TRAIN_END, 2),
        State("train_epoch", 3, compound=True),
        State("on_train_epoch_start", 4),
        State("train_batch", 4, compound=True),
        State(_EPOCH_END, 4),
        State("evaluate_epoch", 4, compound=True, dashed=True),
        State("on_epoch_end", 4),
        State("on_start_training_batch", 5),
        State("training_step", 5),
        State("on_end_training_batch", 5),
        *_EVALUATE_BODY,
    )),
    edges=_TRAIN_EDGES,
    initial="train",
    finals=(_TRAIN_END,),
    guards=(
        Guard("epochs_remaining", "the next epoch (_start_epoch, then _epoch + 1) is <= _num_epochs"),
        Guard("has_next_batch", "train_epoch_iter (else train_loader) yields another item"),
        Guard("eval_due", "_has_eval and _epoch % _eval_interval == 0"),
        *_EVALUATE_GUARDS,
        *(_overridden_guard(h) for h in ("train_loop", "train_epoch", "train_batch", "evaluate_epoch")),
    ),
    colorscheme="set36",
    graph_name="Trainloop",
    doc="farabio's training lifecycle, with evaluation nested at evaluate_epoch.",
)


# -- test --------------------------------------------------------------------------

_TEST_END = "on_test_end"


def _test_batch_controls(source: str) -> tuple[Edge, ...]:
    return (
        _stop(source, _TEST_END),
        _stop_epoch(source, _TEST_END, "stop_epoch() requested: the rest of the test loop is skipped"),
        *_skip(source, "on_start_test_batch", _TEST_END, "has_next_test_batch", SKIP),
    )


TEST = Lifecycle(
    name="test",
    states=_nest((
        State("test", 1, compound=True),
        State("load_model", 2),
        State("load_parallel_model", 2),
        State("on_test_start", 2),
        State("test_loop", 2, compound=True),
        State(_TEST_END, 2),
        State("on_start_test_batch", 3),
        State("test_step", 3),
        State("on_end_test_batch", 3),
    )),
    edges=(
        _stop("test", _TEST_END),
        Edge("test", "load_parallel_model", "choice", guard="data_parallel"),
        Edge("test", "load_model", "choice"),
        _stop("load_model", _TEST_END),
        Edge("load_model", "on_test_start"),
        _stop("load_parallel_model", _TEST_END),
        Edge("load_parallel_model", "on_test_start"),
        _stop("on_test_start", _TEST_END),
        Edge("on_test_start", "test_loop"),
        _stop("test_loop", _TEST_END),
        _override("test_loop", _TEST_END, "test_loop"),
        Edge("test_loop", "on_start_test_batch", "descend", guard="has_next_test_batch"),
        Edge("test_loop", _TEST_END, "return", reason="the test iterable is empty"),
        *_test_batch_controls("on_start_test_batch"),
        Edge("on_start_test_batch", "test_step"),
        *_test_batch_controls("test_step"),
        Edge("test_step", "on_end_test_batch"),
        _stop("on_end_test_batch", _TEST_END),
        _stop_epoch("on_end_test_batch", _TEST_END, "stop_epoch() requested: the test loop ends"),
        Edge("on_end_test_batch", "on_start_test_batch", "loop",
             guard="has_next_test_batch", label="test_loop_iter"),
        Edge("on_end_test_batch", _TEST_END, "return", drawn_from="test_loop"),
    ),
    initial="test",
    finals=(_TEST_END,),
    guards=(
        Guard("data_parallel", "_data_parallel is truthy"),
        Guard("has_next_test_batch", "test_loop_iter (else test_loader) yields another item"),
        _overridden_guard("test_loop"),
    ),
    colorscheme="set33",
    graph_name="Testloop",
    doc="farabio's test lifecycle: load the model, then loop over the test items.",
)

#: The built-in lifecycles by name.
BUILTIN: dict[str, Lifecycle] = {"train": TRAIN, "evaluate": EVALUATE, "test": TEST}


def get(name: str) -> Lifecycle:
    """The built-in lifecycle called ``name`` (``train``, ``evaluate`` or ``test``)."""
    from statetrainer._errors import UnknownStateError

    try:
        return BUILTIN[name]
    except KeyError:
        raise UnknownStateError(name, BUILTIN, what="lifecycle") from None
