"""Faults and bad input (issue 12): one clear line, nothing lost.

Every case runs the real ``statetrainer`` command and expects one line on stderr naming the
file, what is wrong and what to do, exit code 2, and the run directory unchanged. A full disk
and a read-only file system are real: a tiny tmpfs mounted in a private mount namespace
(``unshare``); those tests are skipped where unprivileged namespaces are not allowed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runs_helpers import (
    ENV,
    STATETRAINER,
    TINY,
    one_line_error,
    same_weights,
    statetrainer,
    status,
    tiny,
    tiny_popen,
    tree,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished Tiny run with checkpoints (hidden=16), to copy and damage."""
    run = tmp_path_factory.mktemp("faults") / "run"
    done = tiny(run, "--checkpoint-every", "2", config=("epochs=1", "hidden=16"))
    assert done.returncode == 0, done.stderr
    settings = json.loads((run / "run.json").read_text())
    settings["train_finished"] = False  # so that --resume resumes training from a checkpoint
    (run / "run.json").write_text(json.dumps(settings))
    return run


def _edit_json(name: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        data = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps(change(data)))
    return edit


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda run: (run / name).write_bytes(content)


def _set(key: str, value: Any) -> Callable[[Any], Any]:
    def change(data: Any) -> Any:
        target = data
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
        return data
    return change


def _trace_line(line: str) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        with (run / "trace.jsonl").open("a") as handle:
            handle.write(line + "\n")
    return edit


RESUME = ("run", TINY, "--resume", "--run-dir", "{run}")
INSPECT = ("inspect", "{run}")
VERIFY_TRACE = ("verify-trace", "{run}/trace.jsonl")

CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...], str]] = [
    # a hand-edited run.json
    ("run.json not JSON", _write("run.json", b"{'trainer': 'Tiny'"), RESUME, "run.json' is not JSON"),
    ("run.json binary", _write("run.json", b"\x89PNG\r\n\x1a\n\xff\xd8"), RESUME, "run.json' is not JSON (not UTF-8"),
    ("run.json a list", _write("run.json", b"[1, 2]"), RESUME, "run.json' holds list, not an object of run settings"),
    ("run.json trainer", _edit_json("run.json", _set("trainer", 5)), RESUME, "'trainer' should be a string, not 5"),
    ("run.json config", _edit_json("run.json", _set("config", "fast")), RESUME,
     "'config' should be an object, not \"fast\""),
    ("run.json values", _edit_json("run.json", _set("config.values", [1])), RESUME,
     "'config.values' should be an object, not [1]"),
    ("run.json checkpoint_every", _edit_json("run.json", _set("config.checkpoint_every", "2")), RESUME,
     "'config.checkpoint_every' should be an int >= 1 or null, not \"2\""),
    ("run.json mode", _edit_json("run.json", _set("config.mode", "fast")), RESUME,
     "'config.mode' should be one of train, test, both, not \"fast\""),
    ("run.json train_finished", _edit_json("run.json", _set("train_finished", "no")), RESUME,
     "'train_finished' should be true or false, not \"no\""),
    ("run.json run_id", _edit_json("run.json", _set("run_id", 42)), RESUME, "'run_id' should be a string, not 42"),
    # a model of another size than the checkpoint's
    ("other model size", _edit_json("run.json", _set("config.values.hidden", 32)), RESUME,
     "self.model: 0.weight has shape [16, 8] in the file, [32, 8] here"),
    # status.json for inspect
    ("status not JSON", _write("status.json", b'{"status": "runn'), INSPECT, "status.json' is unreadable: not JSON"),
    ("status binary", _write("status.json", b"\x89PNG\r\n\x1a\n\x00"), INSPECT, "is unreadable: not JSON (not UTF-8 text)"),
    ("status status", _edit_json("status.json", _set("status", 5)), INSPECT,
     "field 'status' should be a string, not 5"),
    ("status epoch", _edit_json("status.json", _set("epoch", "x")), INSPECT,
     "field 'epoch' should be an int or null, not \"x\""),
    ("status metrics list", _edit_json("status.json", _set("metrics", [1])), INSPECT,
     "field 'metrics' should be an object of numbers"),
    ("status metrics value", _edit_json("status.json", _set("metrics", {"loss": "low"})), INSPECT,
     "field 'metrics' should be an object of numbers"),
    ("status recent", _edit_json("status.json", _set("recent", "abc")), INSPECT,
     "field 'recent' should be a list of strings"),
    ("status recent ints", _edit_json("status.json", _set("recent", [1, 2])), INSPECT,
     "field 'recent' should be a list of strings"),
    ("status error", _edit_json("status.json", _set("error", "boom")), INSPECT, "field 'error' should be null or"),
    ("status elapsed", _edit_json("status.json", _set("elapsed", "1s")), INSPECT,
     "field 'elapsed' should be a number"),
    ("status pid", _edit_json("status.json", _set("pid", "123")), INSPECT, "field 'pid' should be an int"),
    ("status updated", _edit_json("status.json", _set("updated", "yesterday")), INSPECT,
     "field 'updated' should be a number"),
    ("status visits", _edit_json("status.json", _set("visits", {"train": "1"})), INSPECT,
     "field 'visits' should be an object of ints"),
    # trace lines for verify-trace
    ("trace list line", _trace_line("[1, 2]"), VERIFY_TRACE, "is list, not a trace entry (an object)"),
    ("trace depth", _trace_line('{"lifecycle": "train", "state": "train", "depth": "x"}'), VERIFY_TRACE,
     "'depth' should be an int >= 0, not \"x\""),
    ("trace depth negative", _trace_line('{"lifecycle": "train", "state": "train", "depth": -1}'), VERIFY_TRACE,
     "'depth' should be an int >= 0, not -1"),
    ("trace no state", _trace_line('{"lifecycle": "train", "depth": 0}'), VERIFY_TRACE,
     "'state' should be a string, not missing"),
    ("trace state number", _trace_line('{"lifecycle": "train", "state": 5, "depth": 0}'), VERIFY_TRACE,
     "'state' should be a string, not 5"),
    ("trace lifecycle null", _trace_line('{"lifecycle": null, "state": "train", "depth": 0}'), VERIFY_TRACE,
     "'lifecycle' should be a string, not null"),
    ("trace note", _trace_line('{"lifecycle": "train", "state": "train", "depth": 0, "note": 5}'), VERIFY_TRACE,
     "'note' should be a string or null, not 5"),
    ("trace not JSON", _trace_line('{"lifecycle": "train",'), VERIFY_TRACE, "is not a JSON line"),
    ("trace binary", _write("trace.jsonl", bytes(range(128, 256))), VERIFY_TRACE, "is not text (a binary file?)"),
    ("lifecycles.json types", _edit_json("lifecycles.json", _set("lifecycles.train", {"states": 5})), VERIFY_TRACE,
     "lifecycles.json' holds an invalid lifecycle"),
]


@pytest.mark.parametrize(("case", "damage", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    tmp_path: Path, finished: Path, case: str, damage: Callable[[Path], None], argv: tuple[str, ...], message: str
) -> None:
    """A damaged or hand-edited file: one line naming the file and what is wrong, exit 2, the
    run directory exactly as it was."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    damage(run)
    before = tree(run)
    err = one_line_error(statetrainer(*(a.format(run=run) for a in argv)))
    assert message in err, err
    assert str(run) in err, "the line names the file"
    assert tree(run) == before, "nothing deleted or overwritten"


def test_bad_demo_settings_are_one_line(tmp_path: Path) -> None:
    """The demo's run.json: each wrong type named with the field."""
    for field, value, message in (("epochs", "ten", "'config.epochs' should be an int >= 0, not \"ten\""),
                                  ("seed", 1.5, "'config.seed' should be an int, not 1.5"),
                                  ("device", 3, "'config.device' should be one of auto, cpu, cuda, mps, not 3"),
                                  ("quiet", "yes", "'config.quiet' should be true or false, not \"yes\"")):
        run = tmp_path / field
        run.mkdir()
        config = {"epochs": 1, "seed": 0, "device": "cpu", "quiet": True, "checkpoint_every": None, field: value}
        (run / "run.json").write_text(json.dumps({"trainer": "DigitsTrainer", "config": config}))
        before = tree(run)
        err = one_line_error(statetrainer("demo", "--resume", "--run-dir", str(run)))
        assert message in err and "run.json" in err and "restore it" in err, err
        assert tree(run) == before


def test_dot_files_that_are_binary_or_not_dot_are_one_line(tmp_path: Path) -> None:
    """verify --diagrams: a binary train.dot, a malformed one, an empty one."""
    for name, content, message in ((b"bin", bytes(range(256)), "is not text (a binary file?)"),
                                   (b"bad", b"digraph {\n a -> \n", "is not valid DOT (Expected"),
                                   (b"empty", b"", "is not valid DOT")):
        folder = tmp_path / name.decode()
        folder.mkdir()
        (folder / "train.dot").write_bytes(content)
        err = one_line_error(statetrainer("verify", "--diagrams", str(folder)))
        assert message in err and str(folder / "train.dot") in err and "restore it" in err, err


def test_a_corrupt_checkpoint_is_skipped_with_a_one_line_warning(tmp_path: Path, finished: Path) -> None:
    """The newest checkpoint truncated: one warning line, the previous one used; all truncated:
    one error line per file warned about, then the error, nothing deleted."""
    from statetrainer import checkpoint as ck

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    files = ck.checkpoint_files(run / "checkpoints")
    for path in files:
        path.write_bytes(path.read_bytes()[:200])
    before = tree(run)
    done = tiny(run, "--resume")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith("statetrainer: ") for line in lines) and "Traceback" not in done.stderr
    assert lines[-1].startswith("statetrainer: error: no readable checkpoint in") and "(all 3 are corrupt)" in lines[-1]
    assert sum("falling back to the previous checkpoint" in line for line in lines) == 3
    assert tree(run) == before


def test_a_model_file_of_another_size_is_one_line_when_testing(tmp_path: Path, finished: Path) -> None:
    """test() loads RUN_DIR/model.pt into a model of another size: one line naming the file."""
    folder = tmp_path / "other"
    folder.mkdir()
    shutil.copy(finished / "model.pt", folder / "model.pt")
    done = tiny(folder, "--mode", "test", "--overwrite", config=("hidden=32",))
    err = one_line_error(done)
    assert f"model file '{folder / 'model.pt'}' does not fit Sequential: " in err
    assert "0.weight has shape [16, 8] in the file, [32, 8] here" in err and "load it into the model" in err
    assert (folder / "model.pt").read_bytes() == (finished / "model.pt").read_bytes()


def test_run_dir_that_is_a_file_and_bad_checkpoint_every(tmp_path: Path) -> None:
    """--run-dir naming a file; --checkpoint-every 0 (nothing written: the folder stays reusable)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file, not a directory" in one_line_error(tiny(afile))
    run = tmp_path / "run"
    assert "checkpoint_every must be an int >= 1" in one_line_error(tiny(run, "--checkpoint-every", "0"))
    assert not (run / "run.json").exists()


def test_inspect_shows_died_after_sigkill_and_watch_ends(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves status.json saying running: inspect shows died (its pid
    is gone) and --watch ends at once instead of waiting forever."""
    run, go_on = tmp_path / "run", tmp_path / "go-on"
    proc = tiny_popen(run, "--checkpoint-every", "1", config=(f"wait_for={go_on}", "epochs=2"))
    deadline = time.monotonic() + 120
    while not (run / "status.json").exists() or status(run).get("global_step", 0) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # reaps it and closes its pipes
    assert status(run)["status"] == "running"
    shown = statetrainer("inspect", str(run))
    assert shown.returncode == 0, shown.stderr
    assert "status     died" in shown.stdout and f"process {proc.pid} is gone" in shown.stdout
    assert "last update" in shown.stdout
    watched = statetrainer("inspect", str(run), "--watch", "--interval", "0.1", timeout=60)
    assert watched.returncode == 0 and "status     died" in watched.stdout
    as_json = json.loads(statetrainer("inspect", str(run), "--json").stdout)
    assert as_json["status"] == "running" and as_json["inspect"]["shown"] == "died"


def test_inspect_of_a_status_from_another_host_shows_its_age(tmp_path: Path, finished: Path) -> None:
    """A running status written on another host cannot be checked: inspect says so and shows
    how old it is; --watch of a finished run ends at once."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    data = status(run)
    data.update(status="running", host="elsewhere", updated=time.time() - 180)
    (run / "status.json").write_text(json.dumps(data))
    shown = statetrainer("inspect", str(run))
    assert "written on host 'elsewhere'" in shown.stdout and "last update 3 min ago" in shown.stdout
    watched = statetrainer("inspect", str(finished), "--watch", timeout=60)
    assert watched.returncode == 0 and "status     finished" in watched.stdout


# -- a real full disk and a real read-only file system -----------------------------------------


def _namespaces() -> bool:
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_namespaces = pytest.mark.skipif(not _namespaces(), reason="unshare: no unprivileged user/mount namespaces")

FULL_DISK = """
set -u
mount -t tmpfs -o size=900k tmpfs "$DISK"
@RUN@ --run-dir "$DISK/run" --checkpoint-every 1 --config hidden=3000 --config lr=0.001 --config epochs=2 >"$OUT/first.out" 2>"$OUT/first.err"
echo $? >"$OUT/first.rc"
cp -a "$DISK/run" "$OUT/after"
mount -o remount,size=64m "$DISK"
@RUN@ --run-dir "$DISK/run" --resume >"$OUT/resume.out" 2>"$OUT/resume.err"
echo $? >"$OUT/resume.rc"
cp -a "$DISK/run" "$OUT/resumed"
"""


def _in_namespace(script: str, tmp_path: Path) -> None:
    """Run ``script`` (sh) as root of a private user and mount namespace: its mounts vanish with it."""
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    script = script.replace("@RUN@", f"{STATETRAINER} run {TINY}").replace("@ST@", STATETRAINER)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=600, env={**ENV, "DISK": str(disk), "OUT": str(out)})
    assert done.returncode == 0, done.stderr


@needs_namespaces
def test_a_full_disk_is_one_line_the_run_failed_and_the_last_good_checkpoint_resumes(tmp_path: Path) -> None:
    """A 900 KB tmpfs fills while checkpoints are written: one line with the real error
    ('No space left on device') and the file, exit 1, status failed, every kept checkpoint
    readable; with space freed, --resume finishes with the uninterrupted weights."""
    from statetrainer import checkpoint as ck

    _in_namespace(FULL_DISK, tmp_path)
    out = tmp_path / "out"
    err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "1", err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("statetrainer: run failed: No space left on device: '") and "/run/" in err, err
    assert "last good checkpoint is kept" in err and "--resume" in err
    after = out / "after"
    assert status(after)["status"] == "failed" and "No space left on device" in status(after)["error"]["message"]
    for path in ck.checkpoint_files(after / "checkpoints"):
        ck.read_checkpoint(path)  # none half-written
    assert (out / "resume.rc").read_text().strip() == "0", (out / "resume.err").read_text()
    reference = tmp_path / "reference"
    assert tiny(reference, "--checkpoint-every", "1", config=("hidden=3000", "lr=0.001", "epochs=2")).returncode == 0
    assert same_weights(out / "resumed" / "model.pt", reference / "model.pt")


READ_ONLY = """
set -u
mount -t tmpfs -o size=16m tmpfs "$DISK"
@RUN@ --run-dir "$DISK/run" --checkpoint-every 2 --config epochs=1 >/dev/null 2>&1 || exit 3
sed -i 's/"train_finished": true/"train_finished": false/' "$DISK/run/run.json"
cp -a "$DISK/run" "$OUT/copy"
mount -o remount,ro "$DISK"
@RUN@ --run-dir "$DISK/run" --resume >/dev/null 2>"$OUT/resume.err"; echo $? >"$OUT/resume.rc"
@RUN@ --run-dir "$DISK/fresh" >/dev/null 2>"$OUT/fresh.err"; echo $? >"$OUT/fresh.rc"
@ST@ inspect "$DISK/run" >"$OUT/inspect.out" 2>&1; echo $? >"$OUT/inspect.rc"
@ST@ diagram train -o "$DISK/train.dot" >/dev/null 2>"$OUT/diagram.err"; echo $? >"$OUT/diagram.rc"
diff -r "$DISK/run" "$OUT/copy" >"$OUT/same.out" 2>&1; echo $? >"$OUT/same.rc"
"""


@needs_namespaces
def test_a_read_only_file_system_is_one_line_and_nothing_changes(tmp_path: Path) -> None:
    """A run directory on a file system remounted read-only: --resume, a fresh run and
    diagram -o each give one line with the reason, exit 2; inspect still reads it."""
    _in_namespace(READ_ONLY, tmp_path)
    out = tmp_path / "out"
    for name in ("resume", "fresh", "diagram"):
        err = (out / f"{name}.err").read_text()
        assert (out / f"{name}.rc").read_text().strip() == "2", (name, err)
        assert err.count("\n") == 1 and "Traceback" not in err and "Read-only file system" in err, (name, err)
    assert "choose a writable run directory" in (out / "resume.err").read_text()
    assert (out / "inspect.rc").read_text().strip() == "0" and "status     finished" in (out / "inspect.out").read_text()
    assert (out / "same.rc").read_text().strip() == "0", (out / "same.out").read_text()
