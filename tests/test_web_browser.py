"""The web view in a real browser: Debian's chromium, headless, driven by Selenium.

End to end: a real training run in a subprocess, watched live (the highlighted state moves
and agrees with status.json), then SIGKILLed (the page says `died`); a failing run shows
its failing state; the replay moves through the trace. Screenshots of each page go to a
pytest tmp folder (printed), and to docs/assets/web/ when STATETRAINER_WEB_SCREENSHOTS=docs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromedriver (apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from statetrainer import tracefile  # noqa: E402
from statetrainer.web.server import ViewServer, make_server, serve_in_thread  # noqa: E402

DOCS_ASSETS = Path(__file__).resolve().parents[1] / "docs" / "assets" / "web"
#: Startup of a run includes importing torch: generous on a loaded machine, quick when it is not.
START_TIMEOUT = 90

TRAINER = textwrap.dedent('''
    """A small ConvnetTrainer for the browser tests: slow enough to watch, optionally failing."""
    import time

    import torch

    from statetrainer import ConvnetTrainer, CSVLogger


    class Watched(ConvnetTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(CSVLogger())

        def define_train_attr(self):
            self._num_epochs = int(self.config.get("epochs", 100))
            self.fail_at = self.config.get("fail_at")
            self.pause = float(self.config.get("pause", 0.08))
            self.item = 0

        def get_trainloader(self):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(32, 3, generator=g)
            y = x.sum(1, keepdim=True)
            self.train_loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
            self.valid_loader = self.train_loader[:2]

        def build_model(self):
            torch.manual_seed(0)
            self.model = torch.nn.Linear(3, 1)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)

        def on_train_epoch_start(self):
            self.item = 0
            time.sleep(self.pause * 6)

        def on_start_training_batch(self, args):
            self.x, self.y = args
            self.item += 1

        def training_step(self):
            if self.fail_at is not None and self._epoch == self.fail_at and self.item == 2:
                raise RuntimeError("loss exploded")
            time.sleep(self.pause)
            self.optimizer_zero_grad()
            loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
            self.loss_backward()
            self.optimizer_step()
            self.log("train_loss", loss)

        def evaluate_batch(self, args):
            x, y = args
            self.log("valid_loss", torch.nn.functional.mse_loss(self.model(x), y))
''')


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def runs(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Two real runs started at once: one that keeps training, one that fails in epoch 2."""
    trainer = tmp_path_factory.mktemp("trainer") / "watched.py"
    trainer.write_text(TRAINER)
    procs = {
        "live": _start(trainer, root / "live", "epochs=400"),
        "failing": _start(trainer, root / "failing", "epochs=5", "fail_at=2", "pause=0.02"),
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _start(trainer: Path, run_dir: Path, *config: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "statetrainer", "run", f"{trainer}:Watched", "--run-dir", str(run_dir)]
    for item in config:
        args += ["--config", item]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ViewServer]:
    view = make_server([root], "127.0.0.1", 0)
    serve_in_thread(view)
    yield view
    view.shutdown()
    view.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1200",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any, str], Path]:
    """Save a screenshot as a test artefact (and into docs/assets/web/ when asked)."""
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nweb view screenshots: {folder}")

    def save(driver: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        driver.save_screenshot(str(path))
        if os.environ.get("STATETRAINER_WEB_SCREENSHOTS") == "docs":
            DOCS_ASSETS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS_ASSETS / path.name)
        return path

    return save


# -- helpers --------------------------------------------------------------------------


def page_state(driver: Any) -> dict[str, str]:
    """What the diagram shows: the highlighted state, the lifecycle drawn, live or replay."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const d = document.getElementById('diagram');"
        "const lit = d.querySelector('g.node.current > title, g.node.failed > title');"
        "return {state: d.dataset.state, lifecycle: d.dataset.lifecycle, mode: d.dataset.mode,"
        "        lit: lit ? lit.textContent : ''};")


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 20, message: str = "") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message)


def read_status(run: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run / "status.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


class StatusRecorder(threading.Thread):
    """Reads status.json every 20 ms and keeps (time, state), to compare with what the page showed."""

    def __init__(self, run: Path) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.samples, self.done = run, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            data = read_status(self.run_dir)
            if data is not None:
                self.samples.append((time.monotonic(), data.get("state")))
            time.sleep(0.02)

    def states_between(self, start: float, end: float) -> set[str]:
        states = {s for t, s in self.samples if start <= t <= end}
        before = [s for t, s in self.samples if t < start]
        return states | set(before[-1:])  # the state already on disk when the window opened


def run_url(server: ViewServer, name: str) -> str:
    return server.run_url(f"0:{name}")


def write_status(run: Path, **fields: Any) -> None:
    data = {"lifecycle": "train", "state": "training_step", "enclosing": [], "epoch": 2, "num_epochs": 10,
            "batch": 3, "batches": 8, "global_step": 11, "status": "running", "depth": 0, "metrics": {},
            "elapsed": 4.0, "transitions": 60, "visits": {"training_step": 11}, "seconds": {},
            "format": "statetrainer.status/1", "trainer": "tests:Synthetic", "pid": os.getpid(),
            "updated": time.time(), "recent": ["on_start_training_batch", "training_step"], **fields}
    tmp = run / ".status.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, run / "status.json")


def write_builtin_lifecycles(run: Path, callbacks: dict[str, Any] | None = None) -> None:
    from statetrainer import lifecycles

    payload = {"format": "statetrainer.lifecycles/1", "trainer": "tests:Synthetic",
               "lifecycles": {n: s.to_dict() for n, s in lifecycles.BUILTIN.items()}}
    if callbacks:
        payload["callbacks"] = callbacks
    (run / "lifecycles.json").write_text(json.dumps(payload))


# -- end to end -------------------------------------------------------------------------


def test_live_run_highlight_follows_status_then_shows_died(runs: dict[str, Any], root: Path, server: ViewServer,
                                                         browser: Any, shots: Callable[[Any, str], Path]) -> None:
    """A real run: the highlighted state changes over time and always matches status.json; SIGKILL shows `died`."""
    run = root / "live"
    proc = runs["live"]
    deadline = time.monotonic() + START_TIMEOUT
    while (read_status(run) or {}).get("global_step", 0) < 1:
        assert proc.poll() is None, "the training run exited early"
        assert time.monotonic() < deadline, "the training run did not start"
        time.sleep(0.1)
    recorder = StatusRecorder(run)
    recorder.start()
    browser.get(run_url(server, "live"))
    wait(browser, lambda d: page_state(d)["state"], message="no state highlighted")
    seen: list[str] = []
    end = time.monotonic() + 30
    while time.monotonic() < end and (len(set(seen)) < 2 or len(seen) < 15):
        shown = page_state(browser)
        at = time.monotonic()
        if shown["state"]:
            assert shown["state"] == shown["lit"], shown
            on_disk = recorder.states_between(at - 2.0, at)
            assert shown["state"] in on_disk, (shown, on_disk)
            seen.append(shown["state"])
        time.sleep(0.15)
    assert len(set(seen)) >= 2, f"the highlight never moved: {seen}"
    shots(browser, "run-live")
    browser.get(server.url)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-id='0:live'][data-status='running']"))
    shots(browser, "runs-live")

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    recorder.done.set()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-id='0:live'][data-status='died']"),
         message="the runs page never said died")
    browser.get(run_url(server, "live"))
    badge = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#run-status .badge"))
    wait(browser, lambda d: badge.text == "died")
    panel = browser.find_element(By.ID, "died").text
    assert str(proc.pid) in panel and (read_status(run) or {})["state"] in panel
    assert page_state(browser)["state"] == (read_status(run) or {})["state"]
    shots(browser, "run-died")


def test_failing_run_shows_the_failing_state_in_red(runs: dict[str, Any], root: Path, server: ViewServer,
                                                    browser: Any, shots: Callable[[Any, str], Path]) -> None:
    """A run that raises in training_step: that node is red, with callback, epoch, batch and traceback."""
    runs["failing"].wait(timeout=START_TIMEOUT)
    error = (read_status(root / "failing") or {}).get("error") or {}
    assert error.get("state") == "training_step", error
    browser.get(run_url(server, "failing"))
    wait(browser, lambda d: page_state(d)["lit"] == "training_step", message="failing state not lit")
    assert browser.find_elements(By.CSS_SELECTOR, "#diagram g.node.failed")
    failure = browser.find_element(By.ID, "failure").text
    assert "training_step" in failure and "epoch 2" in failure and "loss exploded" in failure
    assert "RuntimeError" in browser.find_element(By.CSS_SELECTOR, "#failure pre.traceback").text
    assert browser.find_element(By.CSS_SELECTOR, "#run-status .badge").text == "failed"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#charts svg.chart"), message="no metric chart")
    shots(browser, "run-failed")


def test_replay_moves_through_the_trace(runs: dict[str, Any], root: Path, server: ViewServer, browser: Any,
                                        shots: Callable[[Any, str], Path]) -> None:
    """Step, scrub, play and jump to the failure: the highlight follows trace.jsonl's entries."""
    runs["failing"].wait(timeout=START_TIMEOUT)
    entries = tracefile.read(root / "failing" / "trace.jsonl")
    browser.get(run_url(server, "failing"))
    wait(browser, lambda d: "replay all" in d.find_element(By.ID, "replay-info").text, message="trace not loaded")
    click = lambda id_: browser.find_element(By.ID, id_).click()  # noqa: E731
    click("r-first")
    wait(browser, lambda d: page_state(d)["mode"] == "replay" and page_state(d)["state"] == entries[0]["state"])
    for k in (1, 2, 3):
        click("r-next")
        wait(browser, lambda d, k=k: page_state(d)["state"] == entries[k]["state"])
    middle = len(entries) // 2
    browser.execute_script("const s = document.getElementById('scrubber'); s.value = arguments[0];"
                           "s.dispatchEvent(new Event('input'));", middle)
    wait(browser, lambda d: page_state(d)["state"] == entries[middle]["state"])
    assert f"entry {middle + 1} of {len(entries)}" in browser.find_element(By.ID, "replay-info").text
    assert browser.find_elements(By.CSS_SELECTOR, "#diagram g.edge.lit0"), "the transition into it is not lit"
    browser.execute_script("document.getElementById('replay').scrollIntoView({block: 'end'})")
    shots(browser, "run-replay")
    click("r-play")
    wait(browser, lambda d: int(d.find_element(By.ID, "scrubber").get_attribute("value")) > middle + 1,
         message="play did not advance")
    click("r-failure")
    wait(browser, lambda d: page_state(d)["lit"] == "training_step"
         and d.find_elements(By.CSS_SELECTOR, "#diagram g.node.failed"))
    click("r-live")
    wait(browser, lambda d: page_state(d)["mode"] == "live")


def test_page_reflects_a_status_change_within_a_second(root: Path, server: ViewServer, browser: Any,
                                                       shots: Callable[[Any, str], Path]) -> None:
    """Rewriting status.json moves the highlight within 1 s; ranks, hover callbacks, resume and stop show too."""
    run = root / "synthetic"
    run.mkdir()
    write_builtin_lifecycles(run, callbacks={"train": {"on_epoch_end": ["EarlyStopping", "ModelCheckpoint"]}})
    write_status(run, state="on_train_epoch_start")
    (run / "trace.jsonl").write_text("".join(json.dumps(
        {"seq": i, "lifecycle": "train", "state": s, "epoch": 1, "batch": None, "depth": 0,
         "note": "resume" if i == 2 else None}) + "\n" for i, s in enumerate(["train", "on_train_start", "start_logger"])))
    browser.get(run_url(server, "synthetic"))
    wait(browser, lambda d: page_state(d)["state"] == "on_train_epoch_start")
    latencies = []
    for state in ("training_step", "on_end_training_batch", "evaluate_batch", "on_epoch_end", "training_step"):
        write_status(run, state=state)
        written = time.monotonic()
        try:
            wait(browser, lambda d, s=state: page_state(d)["state"] == s, timeout=5)
        except TimeoutException:
            pytest.fail(f"the page did not show {state} within 5 s")
        latencies.append(time.monotonic() - written)
    print(f"status.json change -> page: {', '.join(f'{x * 1000:.0f}' for x in latencies)} ms")
    assert max(latencies) < 1.0, latencies

    node = browser.find_element(By.XPATH, "//*[local-name()='g'][contains(@class, 'node')][*[local-name()='title']='on_epoch_end']")
    ActionChains(browser).move_to_element(node).perform()
    tip = wait(browser, lambda d: d.find_element(By.ID, "tooltip").is_displayed() and d.find_element(By.ID, "tooltip"))
    assert "EarlyStopping" in tip.text and "epoch_end" in tip.text

    (run / "status.rank1.json").write_text(json.dumps({"state": "evaluate_batch", "lifecycle": "train", "rank": 1,
                                                       "epoch": 2, "batch": 0}))
    write_status(run, state="training_step", world_size=2)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#diagram g.node.other-rank"))
    assert "evaluate_batch" in browser.find_element(By.ID, "ranks").text

    browser.find_element(By.ID, "r-resume").click()
    wait(browser, lambda d: "resume" in d.find_element(By.ID, "replay-info").text
         and page_state(d)["state"] == "start_logger")
    browser.find_element(By.ID, "r-live").click()
    write_status(run, state="on_train_end", status="stopped", stop_reason="EarlyStopping: valid_loss stalled")
    stopped = wait(browser, lambda d: d.find_elements(By.ID, "stopped"))[0]
    assert "on_train_end" in stopped.text and "valid_loss stalled" in stopped.text


def test_runs_page_lists_every_run_sorts_and_filters(root: Path, server: ViewServer, browser: Any,
                                                    shots: Callable[[Any, str], Path]) -> None:
    """Every run with its status; the status column sorts failures first; the filter narrows the rows."""
    done = root / "sweep" / "lr-0.1"
    done.mkdir(parents=True)
    write_status(done, status="finished", state="on_train_end", epoch=10, batch=7, global_step=80)
    browser.get(server.url)
    rows = lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")  # noqa: E731
    wait(browser, lambda d: len(rows(d)) >= 3)
    browser.find_element(By.CSS_SELECTOR, "th[data-key='status']").click()
    statuses = [r.get_attribute("data-status") for r in rows(browser)]
    order = ["failed", "died", "error", "running", "stopping", "starting", "stopped", "finished"]
    assert statuses == sorted(statuses, key=order.index) and "finished" in statuses, statuses
    shots(browser, "runs")
    browser.find_element(By.ID, "filter").send_keys("fail")
    wait(browser, lambda d: [r.get_attribute("data-status") for r in rows(d)] == ["failed"])
