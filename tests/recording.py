"""A trainer that records its hook calls, and the oracle: DESIGN §2 as plain nested loops.

The oracle is written independently of statetrainer's machine: it is farabio's
``train()``/``evaluate_epoch()``/``test()`` as ordinary Python loops. Control requests are
exceptions that unwind the loops, checked after each state runs (a request made inside a
state takes effect when the state is done), by priority stop > stop_epoch > skip_batch:

* ``stop``: the next thing that happens is the lifecycle's end hook (``on_train_end``,
  ``on_test_end``); the run ends ``stopped``.
* ``stop_epoch``: made inside an epoch's training (from ``on_train_epoch_start`` to the
  last batch's end), the epoch's remaining batches are skipped and ``on_train_epoch_end``
  follows; inside an evaluation (from ``on_evaluate_epoch_start`` to its last batch's
  end), ``on_evaluate_epoch_end`` follows; inside the test items, ``on_test_end``.
  Made anywhere else it has nothing to cut short and is forgotten.
* ``skip_batch``: made inside a batch before its end hook (its start hook or its step),
  the batch's remaining hooks are skipped and the next item (or the loop's end) follows;
  anywhere else it is forgotten. farabio's ``_next_loop`` in ``on_evaluate_batch_start``
  is a skip request.

Requests may come from any state, including the compound states the seed draws around
the hooks; the oracle visits those where the seed's diagrams enter them: ``train`` and
``train_loop`` once, ``train_epoch`` before the first epoch (later epochs loop from
``on_epoch_end`` straight to ``on_train_epoch_start``), ``train_batch`` after each
``on_train_epoch_start``, ``evaluate_epoch`` before each evaluation, ``test`` and
``test_loop`` once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from statetrainer import ConvnetTrainer

#: The control requests, by the name of the trainer method that makes them.
REQUESTS = ("stop", "stop_epoch", "skip_batch")

#: Where a request is made: (state, epoch, batch index or -1) -> requests made there.
Position = tuple[str, int, int]


@dataclass(frozen=True)
class Config:
    """One random configuration of a run."""

    num_epochs: int = 2
    start_epoch: int = 1
    batches: int = 2
    valid_items: int = 2
    test_items: int = 2
    has_eval: bool = True
    eval_interval: int = 1
    skip_eval: frozenset[tuple[int, int]] = frozenset()  # (epoch, item index) to skip via _next_loop
    data_parallel: bool = False
    set_iterables: bool = False  # hooks set enumerate(...) iterables, else the loaders are used
    stop_at: tuple[str, int, int] | None = None  # (hook, epoch, batch index or -1): stop_train() in the hook
    # (state, epoch, batch index or -1, request): a callback on that state makes the request
    requests: frozenset[tuple[str, int, int, str]] = frozenset()

    def requested_at(self, position: Position) -> frozenset[str]:
        """The requests made at ``position`` (a stop_train() from the hook counts as ``stop``)."""
        made = {r for (*where, r) in self.requests if tuple(where) == position}
        if self.stop_at == position:
            made.add("stop")
        return frozenset(made)


class _Stop(Exception):
    pass


class _StopEpoch(Exception):
    pass


class _SkipBatch(Exception):
    pass


@dataclass
class Oracle:
    """Plain loops that produce the expected hook calls for a :class:`Config`.

    ``calls`` are the hook calls; ``positions`` where each hook ran; ``visits`` every state
    entered (hooks and compound states) with its position; ``stopped`` whether a stop was
    requested.
    """

    cfg: Config
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    visits: list[Position] = field(default_factory=list)
    stopped: bool = False
    epoch: int = 1  # farabio's default _epoch before the loop

    def visit(self, state: str, *, batch: int = -1, in_loop: bool = False, in_batch: bool = False,
              also: frozenset[str] = frozenset()) -> None:
        """Enter ``state``; then serve the requests made there (and ``also``), by priority."""
        position = (state, self.epoch, batch)
        self.visits.append(position)
        made = self.cfg.requested_at(position) | also
        if "stop" in made:
            self.stopped = True
            raise _Stop
        if "stop_epoch" in made and in_loop:
            raise _StopEpoch
        if "skip_batch" in made and in_batch:
            raise _SkipBatch

    def emit(self, hook: str, *args: Any, batch: int = -1, in_loop: bool = False, in_batch: bool = False,
             also: frozenset[str] = frozenset()) -> None:
        """Call ``hook`` (record it), then serve the requests made in its state."""
        self.calls.append((hook, *args))
        self.positions.append((hook, self.epoch, batch))
        self.visit(hook, batch=batch, in_loop=in_loop, in_batch=in_batch, also=also)

    def final(self, hook: str) -> None:
        """The lifecycle's end hook: a stop requested here still makes the run ``stopped``."""
        self.calls.append((hook,))
        self.positions.append((hook, self.epoch, -1))
        self.visits.append((hook, self.epoch, -1))
        self.stopped |= "stop" in self.cfg.requested_at((hook, self.epoch, -1))

    def item(self, kind: str, epoch: int, i: int) -> Any:
        raw = (kind, epoch, i)
        return (i, raw) if self.cfg.set_iterables else raw

    def train(self) -> list[tuple[Any, ...]]:
        c = self.cfg
        try:
            self.visit("train")
            self.emit("on_train_start")
            self.emit("start_logger")
            self.visit("train_loop")
            epochs = range(c.start_epoch, c.num_epochs + 1)
            if epochs:
                self.visit("train_epoch")
            for self.epoch in epochs:
                self.train_epoch()
                if c.has_eval and self.epoch % c.eval_interval == 0:
                    self.evaluate()
                self.emit("on_epoch_end")
        except _Stop:
            pass
        self.final("on_train_end")
        return self.calls

    def train_epoch(self) -> None:
        try:
            self.emit("on_train_epoch_start", in_loop=True)
            self.visit("train_batch", in_loop=True)
            for i in range(self.cfg.batches):
                try:
                    self.emit("on_start_training_batch", self.item("train", self.epoch, i), batch=i,
                              in_loop=True, in_batch=True)
                    self.emit("training_step", batch=i, in_loop=True, in_batch=True)
                    self.emit("on_end_training_batch", batch=i, in_loop=True)
                except _SkipBatch:
                    continue
        except _StopEpoch:
            pass
        self.emit("on_train_epoch_end")

    def evaluate(self) -> None:
        c = self.cfg
        self.visit("evaluate_epoch")
        try:
            self.emit("on_evaluate_epoch_start", in_loop=True)
            for i in range(c.valid_items):
                item = self.item("valid", self.epoch, i)
                try:
                    self.evaluate_item(item, i)
                except _SkipBatch:
                    continue
        except _StopEpoch:
            pass
        self.emit("on_evaluate_epoch_end")

    def evaluate_item(self, item: Any, i: int) -> None:
        skip = frozenset({"skip_batch"}) if (self.epoch, i) in self.cfg.skip_eval else frozenset()  # _next_loop
        self.emit("on_evaluate_batch_start", item, batch=i, in_loop=True, in_batch=True, also=skip)
        self.emit("evaluate_batch", item, batch=i, in_loop=True, in_batch=True)
        self.emit("on_evaluate_batch_end", batch=i, in_loop=True)

    def test(self) -> list[tuple[Any, ...]]:
        c = self.cfg
        self.epoch = -1
        try:
            self.visit("test")
            self.emit("load_parallel_model" if c.data_parallel else "load_model")
            self.emit("on_test_start")
            self.visit("test_loop")
            try:
                for i in range(c.test_items):
                    item = self.item("test", -1, i)
                    try:
                        self.emit("on_start_test_batch", batch=i, in_loop=True, in_batch=True)
                        self.emit("test_step", item, batch=i, in_loop=True, in_batch=True)
                        self.emit("on_end_test_batch", batch=i, in_loop=True)
                    except _SkipBatch:
                        continue
            except _StopEpoch:
                pass
        except _Stop:
            pass
        self.final("on_test_end")
        return self.calls


class Loader:
    """A re-iterable stand-in for a DataLoader whose items name their epoch."""

    def __init__(self, owner: RecordingTrainer, kind: str, count: int) -> None:
        self.owner, self.kind, self.count = owner, kind, count

    def __iter__(self) -> Any:
        epoch = self.owner._epoch if self.kind != "test" else -1
        return iter([(self.kind, epoch, i) for i in range(self.count)])

    def __len__(self) -> int:
        return self.count


class RecordingTrainer(ConvnetTrainer):
    """Records every hook call as ``(hook, *args)``; stops where the config says.

    With ``cfg.requests``, a callback on every state of the train and test lifecycles
    makes the requests configured for its position, after the state's hook.
    """

    def __init__(self, cfg: Config, **kwargs: Any) -> None:
        self.cfg = cfg
        self.calls: list[tuple[Any, ...]] = []
        self.construction: list[str] = []
        super().__init__({"cfg": cfg}, **kwargs)
        if cfg.requests:
            for spec in self.lifecycles().values():
                for state in spec.state_names:
                    self.on(state, lambda t, s=state: t._make_requests(s))

    def _rec(self, hook: str, *args: Any, batch: int = -1) -> None:
        self.calls.append((hook, *args))
        if self.cfg.stop_at == (hook, self._position_epoch(hook), batch):
            self.stop_train()

    def _position_epoch(self, state: str) -> int:
        return -1 if state in _TEST_STATES else self._epoch

    def _make_requests(self, state: str) -> None:
        counter = _BATCH_COUNTER.get(state)
        position = (state, self._position_epoch(state), getattr(self, counter) if counter else -1)
        made = {r for (*where, r) in self.cfg.requests if tuple(where) == position}
        for request in REQUESTS:  # the order made does not matter: the lifecycle's edges set the priority
            if request in made:
                getattr(self, request)()

    # construction
    def init_attr(self, *args: Any) -> None:
        self.construction.append("init_attr")
        super().init_attr()

    def define_train_attr(self) -> None:
        c = self.cfg
        self._num_epochs, self._start_epoch = c.num_epochs, c.start_epoch
        self._has_eval, self._eval_interval = c.has_eval, c.eval_interval

    def define_compute_attr(self) -> None:
        self._data_parallel = self.cfg.data_parallel

    def get_trainloader(self) -> None:
        self.construction.append("get_trainloader")
        self.train_loader = Loader(self, "train", self.cfg.batches)
        self.valid_loader = Loader(self, "valid", self.cfg.valid_items)

    def get_testloader(self) -> None:
        self.construction.append("get_testloader")
        self.test_loader = Loader(self, "test", self.cfg.test_items)

    def build_model(self) -> None:
        self.construction.append("build_model")

    def build_parallel_model(self) -> None:
        self.construction.append("build_parallel_model")

    # train
    def on_train_start(self) -> None:
        self._rec("on_train_start")

    def start_logger(self) -> None:
        self._rec("start_logger")

    def on_train_epoch_start(self) -> None:
        if self.cfg.set_iterables:
            self.train_epoch_iter = enumerate(self.train_loader)
        self._rec("on_train_epoch_start")

    def on_start_training_batch(self, args: Any) -> None:
        self._batch = args[0] if self.cfg.set_iterables else args[2]
        self._rec("on_start_training_batch", args, batch=self._batch)

    def training_step(self) -> None:
        self._rec("training_step", batch=self._batch)

    def on_end_training_batch(self) -> None:
        self._rec("on_end_training_batch", batch=self._batch)

    def on_train_epoch_end(self) -> None:
        self._rec("on_train_epoch_end")

    def on_epoch_end(self) -> None:
        self._rec("on_epoch_end")

    def on_train_end(self) -> None:
        self._rec("on_train_end")

    # evaluate
    def on_evaluate_epoch_start(self) -> None:
        if self.cfg.set_iterables:
            self.valid_epoch_iter = enumerate(self.valid_loader)
        self._rec("on_evaluate_epoch_start")

    def on_evaluate_batch_start(self, args: Any) -> None:
        self._vbatch = args[0] if self.cfg.set_iterables else args[2]
        if (self._epoch, self._vbatch) in self.cfg.skip_eval:
            self._next_loop = True
        self._rec("on_evaluate_batch_start", args, batch=self._vbatch)

    def evaluate_batch(self, args: Any) -> None:
        self._rec("evaluate_batch", args, batch=self._vbatch)

    def on_evaluate_batch_end(self) -> None:
        self._rec("on_evaluate_batch_end", batch=self._vbatch)

    def on_evaluate_epoch_end(self) -> None:
        self._rec("on_evaluate_epoch_end")

    # test
    def load_model(self) -> None:
        self._rec("load_model")

    def load_parallel_model(self) -> None:
        self._rec("load_parallel_model")

    def on_test_start(self) -> None:
        if self.cfg.set_iterables:
            self.test_loop_iter = enumerate(self.test_loader)
        self._rec("on_test_start")

    def on_start_test_batch(self) -> None:
        self._tbatch = self._peek_test_index()
        self._rec("on_start_test_batch", batch=self._tbatch)

    def _peek_test_index(self) -> int:
        self._tcount = getattr(self, "_tcount", -1) + 1
        return self._tcount

    def test_step(self, args: Any) -> None:
        self._rec("test_step", args, batch=self._tbatch)

    def on_end_test_batch(self) -> None:
        self._rec("on_end_test_batch", batch=self._tbatch)

    def on_test_end(self) -> None:
        self._rec("on_test_end")


_TEST_STATES = {
    "test", "test_loop", "load_model", "load_parallel_model", "on_test_start", "on_start_test_batch",
    "test_step", "on_end_test_batch", "on_test_end",
}

#: The attribute holding the current item's index, for states inside a batch.
_BATCH_COUNTER = {
    **dict.fromkeys(("on_start_training_batch", "training_step", "on_end_training_batch"), "_batch"),
    **dict.fromkeys(("on_evaluate_batch_start", "evaluate_batch", "on_evaluate_batch_end"), "_vbatch"),
    **dict.fromkeys(("on_start_test_batch", "test_step", "on_end_test_batch"), "_tbatch"),
}
