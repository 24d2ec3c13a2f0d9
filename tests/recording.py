"""A trainer that records its hook calls, and the oracle: DESIGN §2 as plain nested loops.

The oracle is written independently of statetrainer's machine: it is farabio's
``train()``/``evaluate_epoch()``/``test()`` as ordinary Python loops, with a stop request
meaning "the next thing that happens is the lifecycle's end hook".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from statetrainer import ConvnetTrainer


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
    stop_at: tuple[str, int, int] | None = None  # (hook, epoch, batch index or -1)


class _Stop(Exception):
    pass


@dataclass
class Oracle:
    """Plain loops that produce the expected hook calls for a :class:`Config`."""

    cfg: Config
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    positions: list[tuple[str, int, int]] = field(default_factory=list)
    epoch: int = 1  # farabio's default _epoch before the loop

    def emit(self, hook: str, *args: Any, batch: int = -1) -> None:
        self.calls.append((hook, *args))
        self.positions.append((hook, self.epoch, batch))
        stop = self.cfg.stop_at
        if stop is not None and stop == (hook, self.epoch, batch):
            raise _Stop

    def item(self, kind: str, epoch: int, i: int) -> Any:
        raw = (kind, epoch, i)
        return (i, raw) if self.cfg.set_iterables else raw

    def train(self) -> list[tuple[Any, ...]]:
        c = self.cfg
        try:
            self.emit("on_train_start")
            self.emit("start_logger")
            for self.epoch in range(c.start_epoch, c.num_epochs + 1):
                self.emit("on_train_epoch_start")
                for i in range(c.batches):
                    self.emit("on_start_training_batch", self.item("train", self.epoch, i), batch=i)
                    self.emit("training_step", batch=i)
                    self.emit("on_end_training_batch", batch=i)
                self.emit("on_train_epoch_end")
                if c.has_eval and self.epoch % c.eval_interval == 0:
                    self.evaluate()
                self.emit("on_epoch_end")
            self.emit("on_train_end")
        except _Stop:
            if self.calls[-1] != ("on_train_end",):
                self.calls.append(("on_train_end",))
        return self.calls

    def evaluate(self) -> None:
        c = self.cfg
        self.emit("on_evaluate_epoch_start")
        for i in range(c.valid_items):
            item = self.item("valid", self.epoch, i)
            self.emit("on_evaluate_batch_start", item, batch=i)
            if (self.epoch, i) in c.skip_eval:
                continue
            self.emit("evaluate_batch", item, batch=i)
            self.emit("on_evaluate_batch_end", batch=i)
        self.emit("on_evaluate_epoch_end")

    def test(self) -> list[tuple[Any, ...]]:
        c = self.cfg
        self.epoch = -1
        try:
            self.emit("load_parallel_model" if c.data_parallel else "load_model")
            self.emit("on_test_start")
            for i in range(c.test_items):
                item = self.item("test", -1, i)
                self.emit("on_start_test_batch", batch=i)
                self.emit("test_step", item, batch=i)
                self.emit("on_end_test_batch", batch=i)
            self.emit("on_test_end")
        except _Stop:
            if self.calls[-1] != ("on_test_end",):
                self.calls.append(("on_test_end",))
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
    """Records every hook call as ``(hook, *args)``; stops where the config says."""

    def __init__(self, cfg: Config, **kwargs: Any) -> None:
        self.cfg = cfg
        self.calls: list[tuple[Any, ...]] = []
        self.construction: list[str] = []
        super().__init__({"cfg": cfg}, **kwargs)

    def _rec(self, hook: str, *args: Any, batch: int = -1) -> None:
        self.calls.append((hook, *args))
        epoch = self._epoch if hook not in _TEST_HOOKS else -1
        if self.cfg.stop_at == (hook, epoch, batch):
            self.stop_train()

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


_TEST_HOOKS = {
    "load_model", "load_parallel_model", "on_test_start", "on_start_test_batch",
    "test_step", "on_end_test_batch", "on_test_end",
}
