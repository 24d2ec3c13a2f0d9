"""The web view in a real browser: Debian's chromium, headless, driven by Selenium.

End to end: a real training run in a subprocess, watched live (the highlighted state moves
and agrees with status.json), then SIGKILLed (the page says `died`); a failing run shows
its failing state; the replay moves through the trace; custom-lifecycle runs (a
LifecycleTrainer with its own `gan` lifecycle, a GanTrainer) show their own diagrams with
their roles; a run stuck in a long training_step shows that state. Screenshots of each page
go to a pytest tmp folder (printed), and to docs/assets/web/ when
STATETRAINER_WEB_SCREENSHOTS=docs (there, with fewer colours: smaller files).
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

REPO = Path(__file__).resolve().parents[1]
DOCS_ASSETS = REPO / "docs" / "assets" / "web"
#: Startup of a run includes importing torch: generous on a loaded machine, quick when it is not.
START_TIMEOUT = 90

TRAINER = textwrap.dedent('''
    """A small ConvnetTrainer for the browser tests: slow enough to watch, optionally failing or stalling."""
    import json
    import pathlib
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
            self.stall = bool(self.config.get("stall", False))
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
            if self.stall and self._epoch == 1 and self.item == 2:
                self.stall_once()
            time.sleep(self.pause)
            self.optimizer_zero_grad()
            loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
            self.loss_backward()
            self.optimizer_step()
            self.log("train_loss", loss)

        def evaluate_batch(self, args):
            x, y = args
            self.log("valid_loss", torch.nn.functional.mse_loss(self.model(x), y))

        def stall_once(self):
            """A long training_step: at least 1.5 s, until the test drops a `release` file (60 s at most)."""
            self.stall = False
            folder = pathlib.Path(self.run_dir)
            (folder / "stalled.json").write_text(json.dumps({"at": time.time(), "epoch": self._epoch}))
            started = time.monotonic()
            while time.monotonic() - started < 1.5 or (
                    not (folder / "release").exists() and time.monotonic() - started < 60):
                time.sleep(0.05)
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


@pytest.fixture(scope="module")
def more_runs(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Started when a later test first needs them (the live test above runs with less load):
    a LifecycleTrainer with its own lifecycle (examples/gan_lifecycle.py's GanLoop), a
    GanTrainer (farabio's, tests/farabio_gan_like.py) and a run that stalls once in training_step."""
    trainer = tmp_path_factory.mktemp("trainer-more") / "watched.py"
    trainer.write_text(TRAINER)
    procs = {
        "gan": _start(REPO / "examples" / "gan_lifecycle.py", root / "gan", "epochs=3", cls="GanLoop"),
        "gan-trainer": _start(REPO / "tests" / "farabio_gan_like.py", root / "gan-trainer", "num_epochs=2",
                              cls="PointGanTrainer"),
        "stalled": _start(trainer, root / "stalled", "epochs=1", "pause=0.02", "stall=true"),
    }
    yield procs
    (root / "stalled" / "release").touch()
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _start(trainer: Path, run_dir: Path, *config: str, cls: str = "Watched") -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "statetrainer", "run", f"{trainer}:{cls}", "--run-dir", str(run_dir)]
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
            _small_png(path, DOCS_ASSETS / path.name)
        return path

    return save


def _small_png(source: Path, target: Path) -> None:
    """``source`` with at most 256 colours (a third of the bytes; UI text stays sharp), else as it is."""
    try:
        from PIL import Image
    except ImportError:
        shutil.copy(source, target)
        return
    with Image.open(source) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            target, optimize=True)


@pytest.fixture
def short_window(browser: Any) -> Iterator[Callable[[int], None]]:
    """Resize the window for a screenshot of a short page; the usual size comes back after the test."""
    yield lambda height: browser.set_window_size(1400, height)
    browser.set_window_size(1400, 1200)



# -- helpers --------------------------------------------------------------------------


def page_state(driver: Any) -> dict[str, str]:
    """What the diagram shows: the highlighted state, the lifecycle drawn, live or replay."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const d = document.getElementById('diagram');"
        "const lit = d.querySelector('g.node.current > title, g.node.failed > title');"
        "return {state: d.dataset.state, lifecycle: d.dataset.lifecycle, mode: d.dataset.mode,"
        "        lit: lit ? lit.textContent : ''};")


def node(driver: Any, title: str) -> Any:
    """The diagram's <g class="node"> of a state (or request), found by its <title>."""
    return driver.find_element(By.XPATH, "//*[@id='diagram']//*[local-name()='g'][contains(@class, 'node')]"
                                         f"[*[local-name()='title']='{title}']")


def hover_tip(driver: Any, element: Any) -> str:
    """Hover ``element`` (scrolled into view) and return the tooltip's text."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(driver).move_to_element(element).perform()
    tip = wait(driver, lambda d: d.find_element(By.ID, "tooltip").is_displayed() and d.find_element(By.ID, "tooltip"))
    text: str = tip.text
    ActionChains(driver).move_by_offset(0, 0).move_to_element(driver.find_element(By.ID, "facts")).perform()
    return text


def diagram_nodes(driver: Any) -> dict[str, dict[str, Any]]:
    """Every node the diagram draws: its text lines, its classes and how many outlines (2: resumable)."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const out = {};"
        "for (const g of document.querySelectorAll('#diagram g.node')) {"
        "  const title = [...g.children].find((c) => c.localName === 'title');"
        "  out[title.textContent] = {lines: [...g.querySelectorAll('text')].map((t) => t.textContent),"
        "    classes: [...g.classList], outlines: g.querySelectorAll('path, polygon').length};"
        "}"
        "return out;")


def legend(driver: Any) -> str:
    return driver.find_element(By.ID, "legend").text  # type: ignore[no-any-return]


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
                                                         browser: Any, shots: Callable[[Any, str], Path],
                                                         short_window: Callable[[int], None]) -> None:
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
    # The legend explains the markings the rendered diagram carries (roles, resumable, no grad, guards).
    text = legend(browser)
    for words in ("double border: resumable", "grey region: no grad", "second line: roles and data feeds",
                  "[guard]", "red border: the current state", "last transitions", "filled red: failed here",
                  "epoch opens", "epoch closes", "batch end"):
        assert words in text, (words, text)
    nodes = diagram_nodes(browser)
    assert nodes["on_start_training_batch"]["lines"] == ["on_start_training_batch", "takes train"]
    assert nodes["on_epoch_end"]["outlines"] == 2 and nodes["training_step"]["outlines"] == 1
    shots(browser, "run-live")
    # The no-grad region is a cluster beside the nodes: never lit, its hover explains it.
    assert not browser.find_elements(By.CSS_SELECTOR, "#diagram g.cluster[class*=lit], #diagram g.cluster.current")
    region = browser.find_element(By.CSS_SELECTOR, "#diagram g.cluster.region > text")
    assert "torch.no_grad()" in hover_tip(browser, region)
    browser.get(server.url)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-id='0:live'][data-status='running']"))
    short_window(400)
    shots(browser, "runs-live")
    short_window(1200)

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
    tip = hover_tip(browser, node(browser, "training_step"))
    assert "once per item" in tip and "roles: none" in tip
    # The page's own view: the failure panel and the red node, both in the window.
    browser.execute_script("window.scrollTo(0, 0); const d = document.getElementById('diagram');"
                           "const n = d.querySelector('g.node.failed').getBoundingClientRect();"
                           "d.scrollTop += n.top - d.getBoundingClientRect().top - 80;")
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


GAN_STEPS = ["discriminator_zero_grad", "discriminator_loss", "discriminator_backward", "discriminator_optim_step",
             "generator_zero_grad", "generator_loss", "generator_backward", "generator_optim_step"]


def test_custom_lifecycle_runs_show_their_own_diagrams_and_roles(more_runs: dict[str, Any], root: Path,
                                                                 server: ViewServer, browser: Any,
                                                                 shots: Callable[[Any, str], Path]) -> None:
    """A LifecycleTrainer with its own `gan` lifecycle, and a GanTrainer: each page draws the run's
    own lifecycle (from its lifecycles.json, no built-in fallback) with that lifecycle's roles."""
    for name in ("gan", "gan-trainer"):
        assert more_runs[name].wait(timeout=START_TIMEOUT) == 0, f"the {name} run failed"

    browser.get(run_url(server, "gan"))
    wait(browser, lambda d: page_state(d)["lit"] == "on_train_end", message="the gan run's final state not lit")
    assert page_state(browser)["lifecycle"] == "gan"
    assert browser.find_element(By.CSS_SELECTOR, "#tabs .tab.active").text == "gan"
    assert not browser.find_element(By.ID, "spec-note").is_displayed()  # its own lifecycles.json, no fallback
    nodes = diagram_nodes(browser)
    assert set(GAN_STEPS) | {"on_start_training_batch", "on_end_training_batch", "on_train_epoch_end"} <= set(nodes)
    assert "training_step" not in nodes and "evaluate_epoch" not in nodes  # not the built-in train lifecycle
    assert nodes["on_start_training_batch"]["lines"] == ["on_start_training_batch", "takes real"]
    assert nodes["on_train_epoch_start"]["lines"][1] == "epoch opens · opens real"
    assert nodes["on_train_epoch_end"]["outlines"] == 2 and nodes["discriminator_loss"]["outlines"] == 1
    assert nodes["stop()"]["lines"] == ["stop()"]
    text = legend(browser)
    assert "double border: resumable" in text and "epoch closes" in text and "real" in text
    assert "no grad" not in text  # nothing runs without grad in this lifecycle: not explained
    tip = hover_tip(browser, node(browser, "on_train_epoch_end"))
    for words in ("once per epoch", "epoch closes", "closes real", "resumable", "visits: 3", "callbacks: "):
        assert words in tip, (words, tip)
    assert "not recorded" not in tip  # the run recorded its callbacks per state (none is a fact, not a gap)
    browser.execute_script("window.scrollTo(0, 0); document.getElementById('diagram').scrollTop = 0")
    shots(browser, "run-custom")

    browser.get(run_url(server, "gan-trainer"))
    wait(browser, lambda d: page_state(d)["lit"] == "on_train_end")
    nodes = diagram_nodes(browser)
    assert page_state(browser)["lifecycle"] == "train" and set(GAN_STEPS) <= set(nodes)
    assert "training_step" not in nodes  # GanTrainer's own train lifecycle, not ConvnetTrainer's
    assert nodes["evaluate_batch"]["lines"] == ["evaluate_batch", "gets valid item"]
    assert "grey region: no grad" in legend(browser)
    tip = hover_tip(browser, node(browser, "on_start_training_batch"))
    assert "takes train" in tip and "each item is a training step" in tip, tip
    browser.get(server.url)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-id='0:gan'][data-status='finished']"))
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-id='0:gan']").text
    assert "GanLoop" in row and "gan" in row.split()


def test_a_run_stuck_in_a_long_training_step_shows_it(more_runs: dict[str, Any], root: Path, server: ViewServer,
                                                      browser: Any) -> None:
    """A training_step that takes seconds: the status sampler writes status.json from inside it, so
    status.json and the page say training_step while it runs (not the last batch end)."""
    run, proc = root / "stalled", more_runs["stalled"]
    deadline = time.monotonic() + START_TIMEOUT
    while not (run / "stalled.json").exists():
        assert proc.poll() is None, "the stalling run exited early"
        assert time.monotonic() < deadline, "the run never reached its long training_step"
        time.sleep(0.05)
    stalled = json.loads((run / "stalled.json").read_text())
    browser.get(run_url(server, "stalled"))
    try:
        written = wait(browser, lambda d: (lambda s: s if s and s["updated"] > stalled["at"] else None)(read_status(run)),
                       timeout=10, message="status.json was not rewritten during the long step")
        assert written["state"] == "training_step" and written["status"] == "running", written
        assert written["epoch"] == 1
        wait(browser, lambda d: page_state(d)["state"] == "training_step"
             and d.find_element(By.ID, "f-state").text == "training_step", timeout=5,
             message="the page does not show training_step")
        assert browser.find_element(By.ID, "f-batch").text.startswith(f"{written['batch']}/")
    finally:
        (run / "release").touch()
    assert proc.wait(timeout=START_TIMEOUT) == 0
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#run-status .badge").text == "finished")


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

    # A failed resumable state: its box is filled red, the second border around it is not.
    write_status(run, state="on_epoch_end", status="failed", error={"state": "on_epoch_end", "message": "boom"})
    wait(browser, lambda d: page_state(d)["lit"] == "on_epoch_end" and d.find_elements(By.CSS_SELECTOR, "#diagram g.node.failed"))
    fills = "return [...document.querySelectorAll('#diagram g.node.failed path')].map((p) => getComputedStyle(p).fill);"
    wait(browser, lambda d: d.execute_script(fills) == ["rgb(214, 39, 40)", "none"], timeout=5,  # after the fade
         message=f"a failed resumable state is not drawn as a red box in its second border: {browser.execute_script(fills)}")


def test_runs_page_lists_every_run_sorts_and_filters(root: Path, server: ViewServer, browser: Any,
                                                    shots: Callable[[Any, str], Path],
                                                    short_window: Callable[[int], None]) -> None:
    """Every run with its status; the status column sorts failures first; the filter narrows the rows."""
    done = root / "sweep" / "lr-0.1"
    done.mkdir(parents=True)
    write_status(done, status="finished", state="on_train_end", epoch=10, batch=7, global_step=80)
    short_window(560)
    browser.get(server.url)
    rows = lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")  # noqa: E731
    wait(browser, lambda d: len(rows(d)) >= 3)
    browser.find_element(By.CSS_SELECTOR, "th[data-key='status']").click()
    statuses = [r.get_attribute("data-status") for r in rows(browser)]
    order = ["failed", "died", "error", "running", "stopping", "starting", "stopped", "finished"]
    assert statuses == sorted(statuses, key=order.index) and "finished" in statuses, statuses
    shots(browser, "runs")
    browser.find_element(By.ID, "filter").send_keys("fail")
    # every failed run, and nothing else (other tests of this module may add failed runs)
    wait(browser, lambda d: {r.get_attribute("data-status") for r in rows(d)} == {"failed"})
