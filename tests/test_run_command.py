"""``statetrainer run TARGET``: what it prints, what each option gives the trainer, and its errors.

A tiny trainer (a Linear model, a few batches of 4) is written into each test's folder with a
sibling module it imports. Most tests call ``statetrainer.cli.main`` in-process (fast); the
terminal and the closed pipe need the real command, run as a subprocess.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from runs_helpers import ENV, STATETRAINER

from statetrainer.cli import main

#: The trainer's sibling module: it imports only when the trainer file's folder is on sys.path.
DATA_MODULE = '''\
import torch

FEATURES = 3


def batches(n):
    x = torch.randn(n, 4, FEATURES)
    return [(b, b.sum(dim=1, keepdim=True)) for b in x]
'''

#: 6 train, 3 valid and 5 test batches. Config: epochs (default 2), lr, show (config keys to
#: print), fail_at_step=N (the N-th training step fails, in a helper, unless the file ``fixed``
#: exists beside it), fixed_epochs (a hook sets the epoch count), log (false: logs nothing),
#: new_data (the hooks that open a pass set its data anew). Prints what it saw of each feed at
#: the end of train and test, and saves RUN_DIR/weights.pt. KeywordEpochs leaves the epoch
#: count to the constructor.
TRAINER = '''\
import json
from pathlib import Path

import torch
from torch import nn

from statetrainer import ConvnetTrainer
from tiny_data import FEATURES, batches

FIXED = Path(__file__).with_name("fixed")


class TinyTrainer(ConvnetTrainer):
    def define_train_attr(self):
        self.set_epochs()
        self.seen = {"train": 0, "valid": 0, "test": 0}
        for key in self.config.get("show", []):
            print(f"config {key} = {self.config.get(key)!r}")

    def set_epochs(self):
        self._num_epochs = self.config.get("fixed_epochs") or self.config.get("epochs", 2)

    def get_trainloader(self):
        self.train_loader = batches(6)
        self.valid_loader = batches(3)

    def get_testloader(self):
        self.test_loader = batches(5)

    def build_model(self):
        self.model = nn.Linear(FEATURES, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.get("lr", 0.05))

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        if self.config.get("new_data"):
            self.train_loader = batches(6)

    def on_start_training_batch(self, args):
        self.seen["train"] += 1
        self.x, self.y = args

    def check_step(self):
        if self.global_step == self.config.get("fail_at_step") and not FIXED.exists():
            raise ValueError("step went wrong")

    def training_step(self):
        self.check_step()
        self.optimizer_zero_grad()
        self.loss = nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()
        if self.config.get("log", True):
            self.log("train_loss", self.loss)

    def on_evaluate_epoch_start(self):
        super().on_evaluate_epoch_start()
        if self.config.get("new_data"):
            self.valid_epoch_iter = iter(batches(3))

    def on_evaluate_batch_start(self, args):
        self.seen["valid"] += 1
        x, y = args
        if self.config.get("log", True):
            self.log("valid_loss", nn.functional.mse_loss(self.model(x), y))

    def on_train_end(self):
        print("seen", json.dumps(self.seen))
        torch.save(self.model.state_dict(), Path(self.run_dir) / "weights.pt")

    def on_test_start(self):
        if self.config.get("new_data"):
            self.test_loader = batches(5)

    def test_step(self, args):
        self.seen["test"] += 1

    def on_test_end(self):
        print("seen", json.dumps(self.seen))


class KeywordEpochs(TinyTrainer):
    def set_epochs(self):
        pass
'''

CALLBACKS = '''\
from statetrainer import Callback, EarlyStopping


class Hello(Callback):
    def on_train_start(self, trainer):
        print("Hello.on_train_start")


def early_stopping(trainer):
    print("early_stopping(trainer) called")
    return [EarlyStopping("valid_loss", patience=5)]


class NeedsArgs(Callback):
    def __init__(self, patience):
        self.patience = patience


def two_args(trainer, other):
    return []


class NotACallback:
    pass


def broken(trainer):
    return {}["no such key"]


def misspelt_monitor(trainer):
    return [EarlyStopping("valid_los")]
'''

TARGET = "tiny_trainer.py:TinyTrainer"
ROW = re.compile(r"^\s+(\d+)\s+(\d+\.\d{4})\s+(\d+\.\d{4})\s+\d+\.\ds$")  # epoch, train_loss, valid_loss, time
HEADER = re.compile(r"^epoch\s+train_loss\s+valid_loss\s+time$")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with the trainer, its sibling module and callbacks, as the working directory.

    What ``main`` adds to ``sys.path`` and ``sys.modules`` (the trainer file's folder, its
    modules) is taken back afterwards, so every test imports its own files afresh.
    """
    (tmp_path / "tiny_trainer.py").write_text(TRAINER)
    (tmp_path / "tiny_data.py").write_text(DATA_MODULE)
    (tmp_path / "my_callbacks.py").write_text(CALLBACKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    folders = (str(tmp_path), str(tmp_path.resolve()))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tmp_path
    finally:
        torch.set_num_threads(torch_threads)
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(folders):
                del sys.modules[name]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``statetrainer run ARGS`` in-process: its exit status, stdout and stderr."""
    code = main(["run", *args])
    out, err = capsys.readouterr()
    return code, out, err


def seen(out: str) -> dict[str, int]:
    """The last ``seen {...}`` line the trainer printed: the items it took of each feed."""
    lines = [line for line in out.splitlines() if line.startswith("seen ")]
    assert lines, out
    counts: dict[str, int] = json.loads(lines[-1][len("seen "):])
    return counts


def table_rows(out: str) -> list[int]:
    """The epochs of the table's rows."""
    return [int(m.group(1)) for m in map(ROW.match, out.splitlines()) if m]


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- what it shows -------------------------------------------------------------------------


def _in_a_terminal(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal (100 columns) as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=ENV)
    finally:
        os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer of the terminal closed it
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return proc.returncode, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_on_a_terminal_it_shows_the_table_a_progress_bar_and_the_run_directory(project: Path) -> None:
    """The real command in a pseudo-terminal, started from another folder: the trainer file's
    sibling module imports; a bar per pass over the train and valid data; a table row per
    epoch of the logged means; the run directory last."""
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    code, text = _in_a_terminal([STATETRAINER, "run", f"{project / TARGET}", "--run-dir", "run"], elsewhere)
    assert code == 0, text
    assert "epoch 1/2:" in text and "epoch 2/2:" in text and "valid (epoch 1):" in text, text
    assert re.search(r"epoch 1/2:\s+\d+%\|", text), text  # a tqdm bar, not some other line
    lines = [line.rstrip() for line in re.split(r"[\r\n]", text) if line.strip()]
    assert any(HEADER.match(line) for line in lines), text
    assert table_rows("\n".join(lines)) == [1, 2], text
    assert lines[-1] == "run directory: run  status: finished", text
    assert (elsewhere / "run" / "weights.pt").is_file()


def test_no_progress_bar_with_quiet_or_when_stdout_is_not_a_terminal(
        project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard output to a file (captured): the table, no bar. A terminal: the bar (on stderr),
    unless --quiet, which also drops the table; the run directory line stays."""
    code, out, err = run(capsys, TARGET, "--run-dir", "piped")
    assert code == 0 and table_rows(out) == [1, 2] and "epoch 1/2" not in err + out, (out, err)

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    terminal = open(slave, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stdout", terminal)
            assert main(["run", TARGET, "--run-dir", "terminal"]) == 0
            assert main(["run", TARGET, "--run-dir", "quiet", "--quiet"]) == 0
        terminal.flush()
        shown = b""
        while select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 65536)
    finally:
        terminal.close()
        os.close(master)
    bars = capsys.readouterr().err
    assert bars.count("epoch 1/2:") >= 1 and "valid (epoch 2):" in bars, bars
    text = shown.decode().replace("\r\n", "\n")
    assert text.count("run directory: ") == 2 and len([ln for ln in text.splitlines() if HEADER.match(ln)]) == 1, text
    assert text.splitlines()[-1] == "run directory: quiet  status: finished", text


def test_the_trainer_files_folder_is_on_sys_path(
        project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Like ``python path/to/file.py``: run from another folder, the file's sibling module imports."""
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert str(project) not in sys.path
    code, out, err = run(capsys, f"{project}/{TARGET}", "--run-dir", "r", "--quiet", "--epochs", "1")
    assert code == 0, err
    assert Path(sys.modules["tiny_data"].__file__ or "") == (project / "tiny_data.py").resolve()
    assert Path(sys.path[0]) == project.resolve()


def test_the_table_header_prints_once_when_the_trainer_logs_nothing(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No metric logged: one header (epoch, time) and a row per epoch."""
    code, out, _ = run(capsys, TARGET, "--run-dir", "r", "--epochs", "3", "--config", "log=false")
    assert code == 0
    lines = out.splitlines()
    assert [line.split() for line in lines if line.startswith("epoch")] == [["epoch", "time"]], out
    assert [line.split()[0] for line in lines if re.match(r"^\s+\d+\s+\d+\.\ds$", line)] == ["1", "2", "3"], out


# -- what the options give the trainer -----------------------------------------------------


def test_epochs_sets_the_epoch_count_and_a_hook_that_overrides_it_is_warned(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--epochs 3 trains three epochs: a trainer reading config['epochs'], and one whose hooks
    leave _num_epochs to the constructor; a hook setting it from elsewhere wins, with a warning."""
    code, out, err = run(capsys, TARGET, "--run-dir", "three", "--epochs", "3")
    assert code == 0 and table_rows(out) == [1, 2, 3] and seen(out)["train"] == 18, out
    assert "warning" not in err
    code, out, err = run(capsys, "tiny_trainer.py:KeywordEpochs", "--run-dir", "keyword", "--epochs", "3")
    assert code == 0 and table_rows(out) == [1, 2, 3] and "warning" not in err, (out, err)
    code, out, err = run(capsys, TARGET, "--run-dir", "fixed", "--epochs", "3", "--config", "fixed_epochs=1")
    assert code == 0 and table_rows(out) == [1], out
    assert "--epochs 3: TinyTrainer sets self._num_epochs = 1 in a hook, and a hook wins" in err, err


@pytest.mark.parametrize("new_data", [False, True], ids=["data-at-build", "data-set-by-the-opening-hooks"])
def test_limit_batches_limits_the_train_valid_and_test_passes(
        project: Path, capsys: pytest.CaptureFixture[str], new_data: bool) -> None:
    """6 train, 3 valid and 5 test batches; --limit-batches 2 takes 2 of each pass, also when
    the hooks that begin a pass set its data (on_train_epoch_start a train_loader,
    on_evaluate_epoch_start a valid_epoch_iter, on_test_start a test_loader)."""
    data = f"new_data={json.dumps(new_data)}"
    code, out, _ = run(capsys, TARGET, "--run-dir", "all", "--mode", "both", "--config", data)
    assert code == 0 and seen(out) == {"train": 12, "valid": 6, "test": 5}, out
    code, out, _ = run(capsys, TARGET, "--run-dir", "limited", "--mode", "both", "--limit-batches", "2",
                       "--config", data)
    assert code == 0 and seen(out) == {"train": 4, "valid": 4, "test": 2}, out
    assert json.loads(Path("limited/run.json").read_text())["config"]["limit_batches"] == 2


def test_fast_dev_run_runs_one_batch_of_each_lifecycle_and_leaves_no_files(
        project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """One epoch of one train, one valid and one test batch; its run directory is gone after."""
    temp = project / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    before = sorted(p.name for p in project.iterdir())
    code, out, err = run(capsys, TARGET, "--fast-dev-run")
    assert code == 0, err
    assert seen(out) == {"train": 1, "valid": 1, "test": 1} and table_rows(out) == [1], out
    assert out.splitlines()[-1].startswith("fast dev run: finished (train and test: one epoch"), out
    assert list(temp.iterdir()) == [], "the temporary run directory is removed"
    assert sorted(p.name for p in project.iterdir() if p.name != "__pycache__") == before
    code, _, err = run(capsys, TARGET, "--fast-dev-run", "--run-dir", "r")
    assert code == 2 and "--fast-dev-run runs one epoch of one batch per pass in a temporary run directory: " \
                          "leave out --run-dir" in err, err


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--seed seeds the data, the initial weights and the training: bitwise the same weights."""
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        code, _, err = run(capsys, TARGET, "--run-dir", name, "--seed", seed, "--quiet", "--epochs", "1")
        assert code == 0, err
    assert same_weights(Path("a/weights.pt"), Path("b/weights.pt"))
    assert not same_weights(Path("a/weights.pt"), Path("c/weights.pt"))


def test_device_and_precision_reach_the_trainers_config(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--device and --precision are config keys the trainer reads; one it never reads is a warning."""
    code, out, err = run(capsys, TARGET, "--run-dir", "a", "--quiet", "--epochs", "1", "--device", "cpu",
                         "--precision", "bf16", "--config", 'show=["device", "precision"]')
    assert code == 0, err
    assert "config device = 'cpu'" in out and "config precision = 'bf16'" in out, out
    assert "warning" not in err, err
    code, _, err = run(capsys, TARGET, "--run-dir", "b", "--quiet", "--epochs", "1", "--device", "cpu")
    assert code == 0
    assert "statetrainer: warning: --device cpu (config['device']) changed nothing: TinyTrainer never read it" in err
    code, _, err = run(capsys, TARGET, "--run-dir", "c", "--device", "gpu")
    assert code == 2 and "--device 'gpu': use auto, cpu, cuda, cuda:N or mps" in err, err
    assert not Path("c").exists(), "a bad option is refused before the run directory is made"


def test_config_takes_key_values_and_json_and_toml_files_a_later_one_winning(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """KEY=VALUE parsed as JSON when it can be, .json and .toml files; in order, the last wins; kept in run.json."""
    Path("base.json").write_text(json.dumps({"lr": 0.5, "name": "from json", "epochs": 1}))
    Path("more.toml").write_text('name = "from toml"\nhidden = [4, 8]\n')
    code, out, err = run(capsys, TARGET, "--run-dir", "r", "--quiet", "--config", "lr=0.25", "--config", "base.json",
                         "--config", "more.toml", "--config", "tag=abc", "--config",
                         'show=["lr", "name", "hidden", "tag", "epochs"]')
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("config ")] == [
        "config lr = 0.5", "config name = 'from toml'", "config hidden = [4, 8]", "config tag = 'abc'",
        "config epochs = 1"]
    assert seen(out)["train"] == 6, "epochs=1 from the JSON file"
    values = json.loads(Path("r/run.json").read_text())["config"]["values"]
    assert values["lr"] == 0.5 and values["hidden"] == [4, 8]
    Path("bad.toml").write_text("name = \n")
    code, _, err = run(capsys, TARGET, "--run-dir", "bad", "--config", "bad.toml")
    assert code == 2 and "--config file 'bad.toml' is not valid TOML" in err, err


def test_callback_adds_a_class_and_what_a_factory_function_returns(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--callback MODULE:Class builds it with no arguments; MODULE:function is called with the trainer."""
    code, out, err = run(capsys, TARGET, "--run-dir", "r", "--quiet", "--epochs", "1",
                         "--callback", "my_callbacks.py:Hello", "--callback", "my_callbacks.py:early_stopping")
    assert code == 0, err
    assert "Hello.on_train_start" in out and "early_stopping(trainer) called" in out, out
    assert json.loads(Path("r/run.json").read_text())["config"]["callbacks"] == [
        "my_callbacks.py:Hello", "my_callbacks.py:early_stopping"]


@pytest.mark.parametrize(
    ("callback", "code", "message"),
    [
        ("my_callbacks.py:Helo", 2, "--callback 'my_callbacks.py' has no attribute 'Helo'; did you mean 'Hello'?"),
        ("my_callbacks.py", 2, "--callback expected MODULE:NAME or file.py:NAME, got 'my_callbacks.py'"),
        ("no_such_module:X", 2, "--callback cannot import 'no_such_module'"),
        ("my_callbacks.py:NeedsArgs", 2, "NeedsArgs() cannot be built without arguments (its signature is (patience))"),
        ("my_callbacks.py:two_args", 2, "cannot be called as fn(trainer): its signature is (trainer, other)"),
        ("my_callbacks.py:NotACallback", 2, "NotACallback has no method named after a state"),
        ("my_callbacks.py:broken", 1, "building --callback my_callbacks.py:broken failed: KeyError: 'no such key'\n"
                                      "  at my_callbacks.py:28 in broken: return {}[\"no such key\"]"),
    ],
    ids=["misspelt", "no-name", "no-module", "needs-arguments", "two-parameters", "not-a-callback", "raises"],
)
def test_a_bad_callback_is_a_clear_error_and_the_fixed_command_then_runs(
        project: Path, capsys: pytest.CaptureFixture[str], callback: str, code: int, message: str) -> None:
    """One message naming the callback (exit 2; 1 with the file and line when its own code
    raised), no traceback; nothing kept in the run directory, so the corrected command runs."""
    got, out, err = run(capsys, TARGET, "--run-dir", "r", "--quiet", "--callback", callback)
    assert got == code and message in err and "Traceback" not in err, err
    assert err.startswith("statetrainer: ") and not Path("r/run.json").exists(), err
    got, _, err = run(capsys, TARGET, "--run-dir", "r", "--quiet", "--epochs", "1",
                      "--callback", "my_callbacks.py:Hello")
    assert got == 0, err


# -- failures and resuming -----------------------------------------------------------------


def test_a_failure_prints_the_users_file_and_line_and_where_in_the_lifecycle_once(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 1; the error, where in the user's code (``at tiny_trainer.py:LINE in check_step``,
    the last of the user's frames: training_step called it), the lifecycle, state, callback,
    epoch and batch, each said once; no traceback."""
    code, out, err = run(capsys, TARGET, "--run-dir", "r", "--config", "fail_at_step=8")
    assert code == 1
    line = next(i for i, text in enumerate(TRAINER.splitlines(), 1) if "step went wrong" in text)
    assert err.startswith("statetrainer: run failed: ValueError: step went wrong\n"), err
    assert f"  at tiny_trainer.py:{line} in check_step: raise ValueError(\"step went wrong\")\n" in err, err
    assert ("  raised in lifecycle 'train', state 'training_step', callback 'hook TinyTrainer.training_step', "
            "epoch 2, batch 1\n") in err, err
    assert (err + out).count("step went wrong") == 2, "the error and the user's line, once each"
    assert err.count("raised in") == 1 and "Traceback" not in err and err.endswith(
        "  (--traceback prints the full traceback)\n"), err
    assert table_rows(out) == [1] and "run directory" not in out, out


def test_traceback_prints_the_full_traceback(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--traceback: the whole chain, the user's frame in it, and no shortened report besides."""
    code, _, err = run(capsys, TARGET, "--run-dir", "r", "--quiet", "--config", "fail_at_step=2", "--traceback")
    assert code == 1
    assert err.count("Traceback (most recent call last):") == 2, err
    assert f'File "{project / "tiny_trainer.py"}", line ' in err and 'raise ValueError("step went wrong")' in err
    assert "statetrainer: run failed" not in err and "--traceback prints" not in err, err


def test_a_failing_constructor_names_the_users_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A hook that fails while the trainer is built: exit 1, the error and the user's line, once."""
    code, _, err = run(capsys, TARGET, "--run-dir", "r", "--config", "show=5")
    assert code == 1
    assert err.startswith("statetrainer: building TinyTrainer failed: TypeError: 'int' object is not iterable\n"), err
    assert "  at tiny_trainer.py:" in err and "in define_train_attr" in err and "Traceback" not in err, err
    assert err.count("not iterable") == 1, err


def test_resume_prints_the_run_the_position_and_the_checkpoint_then_the_table_header(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run fails in epoch 2 after checkpoints every 2 steps; --resume --run-dir continues it
    from the step-8 checkpoint with its saved settings: the resume line names the run,
    epoch, batch and checkpoint file, the header follows, then the remaining epoch."""
    code, _, _ = run(capsys, TARGET, "--run-dir", "r", "--config", "fail_at_step=10", "--checkpoint-every", "2")
    assert code == 1
    Path("fixed").touch()
    code, out, err = run(capsys, TARGET, "--run-dir", "r", "--resume")
    assert code == 0, err
    run_id = json.loads(Path("r/run.json").read_text())["run_id"]
    lines = out.splitlines()
    found = re.fullmatch(r"resumed run (\w{8})… at epoch 2, batch 1 \(checkpoint (checkpoints/ckpt-\S+\.pt)\)",
                         lines[0])
    assert found, out
    assert found.group(1) == run_id[:8] and (Path("r") / found.group(2)).is_file()
    assert f"-{run_id}-000000008-" in found.group(2), "the checkpoint of step 8, the last before the failure"
    assert HEADER.match(lines[1]), out
    assert table_rows(out) == [2] and lines[-1] == "run directory: r  status: finished", out
    code, _, err = run(capsys, TARGET, "--run-dir", "r", "--resume", "--epochs", "3")
    assert code == 2 and "leave out --epochs" in err, err


def test_resuming_a_finished_training_says_there_is_nothing_to_resume(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--mode train, finished: --resume says so, runs nothing, and claims no status."""
    assert run(capsys, TARGET, "--run-dir", "r", "--quiet", "--epochs", "1")[0] == 0
    code, out, _ = run(capsys, TARGET, "--run-dir", "r", "--resume")
    assert code == 0
    assert out.splitlines() == ["training in r had finished: nothing to resume", "run directory: r"], out


# -- the command line ----------------------------------------------------------------------


def test_help_shows_every_options_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Each option of ``run --help`` says its default; the examples follow."""
    with pytest.raises(SystemExit, match="0"):
        main(["run", "--help"])
    text = capsys.readouterr().out
    options = text.split("\noptions:\n", 1)[1].split("\nexamples:\n", 1)[0]
    entries = re.split(r"\n  (?=-)", options)
    helps = {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries if entry.strip()}
    assert {"--config", "--epochs", "--seed", "--device", "--precision", "--callback", "--mode", "--limit-batches",
            "--fast-dev-run", "--run-dir", "--resume", "--checkpoint-every", "--overwrite", "--quiet", "--log-level",
            "--profile", "--traceback"} <= set(helps), sorted(helps)
    missing = [name for name, help_text in helps.items() if name != "-h" and "(default: " not in help_text]
    assert missing == [], missing
    assert "statetrainer run first_trainer.py:FirstTrainer --fast-dev-run" in text


def test_version_names_statetrainer_torch_and_python(capsys: pytest.CaptureFixture[str]) -> None:
    """--version: the package's version, torch's and Python's."""
    from statetrainer import __version__

    with pytest.raises(SystemExit, match="0"):
        main(["--version"])
    out = capsys.readouterr().out
    assert re.fullmatch(rf"statetrainer {re.escape(__version__)} \(torch \S+, Python \d+\.\d+\.\d+\)\n", out), out


def test_a_misspelt_class_gets_a_did_you_mean(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``run file.py:TinyTrainr`` names TinyTrainer (not ConvnetTrainer, which the file imports)."""
    Path("two.py").write_text("from statetrainer import ConvnetTrainer\nfrom tiny_trainer import TinyTrainer\n\n\n"
                              "class OtherTrainer(TinyTrainer):\n    pass\n")
    code, _, err = run(capsys, "two.py:TinyTrainr")
    assert code == 2
    assert err == "statetrainer: error: 'two.py' has no attribute 'TinyTrainr'; did you mean 'TinyTrainer'?\n", err


def test_output_to_a_closed_pipe_ends_quietly(project: Path) -> None:
    """``statetrainer run ... | head -0``: the reader is gone before the first line (the table's
    header, printed inside the run, unbuffered): exit 141 as for SIGPIPE, no traceback."""
    read, write = os.pipe()
    os.close(read)
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, write)
        proc = subprocess.Popen([STATETRAINER, "run", TARGET, "--run-dir", "r", "--epochs", "1"], stdout=write,
                                stderr=subprocess.PIPE, text=True, cwd=project, env={**ENV, "PYTHONUNBUFFERED": "1"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "Error" not in err, err
    assert Path("r/weights.pt").exists() is False, "it stopped at the first print, in epoch 1"


def test_output_cut_short_at_the_end_ends_quietly(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Buffered output, flushed at the end into a pipe with no reader: exit 141, nothing raised."""
    read, write = os.pipe()
    os.close(read)
    stdout = io.TextIOWrapper(open(write, "wb"), encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stdout", stdout)
            assert main(["run", TARGET, "--run-dir", "r", "--epochs", "1"]) == 141
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdout.close()
    assert Path("r/weights.pt").is_file(), "the run finished before the output was cut"


def test_a_custom_lifecycle_trainer_runs_only_the_lifecycles_it_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A LifecycleTrainer without a test lifecycle: --fast-dev-run checks its training only;
    --mode both is refused before anything is written, naming its lifecycles."""
    from statetrainer.cli import main

    monkeypatch.chdir(tmp_path)
    target = f"{Path(__file__).resolve().parents[1] / 'examples' / 'gan_lifecycle.py'}:GanLoop"
    assert main(["run", target, "--fast-dev-run", "--quiet"]) == 0
    assert "fast dev run: finished (train: one epoch, at most one batch per pass)" in capsys.readouterr().out
    assert main(["run", target, "--mode", "both", "--run-dir", "runs/gan"]) == 2
    assert "--mode both: GanLoop has no test lifecycle (its lifecycles: gan); use --mode train" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_callback_misconfigured_for_the_run_is_a_failed_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A monitored metric never logged (found at the first epoch's end): the run failed, exit 1,
    one line with the did-you-mean and where — not exit 2, which is for bad input."""
    code, _, err = run(capsys, TARGET, "--epochs", "2", "--quiet", "--run-dir", "runs/typo",
                       "--callback", "my_callbacks.py:misspelt_monitor")
    assert code == 1, err
    assert "statetrainer: run failed: metric 'valid_los' was not logged" in err and "did you mean 'valid_loss'" in err
    assert "(in lifecycle 'train', state 'on_epoch_end'" in err and err.count("\n") == 1  # one line
    assert json.loads((project / "runs" / "typo" / "status.json").read_text())["status"] == "failed"
