"""The web view's server over real HTTP on 127.0.0.1: JSON endpoints, safety, bad files, big traces."""

from __future__ import annotations

import html
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statetrainer.spec import Edge, Guard, Lifecycle, State
from statetrainer.web import files
from statetrainer.web.server import ViewServer, make_server, serve_in_thread

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")

def _toy() -> Lifecycle:
    return Lifecycle(
        name="toy",
        states=(State("begin"), State("work", 2), State("done")),
        edges=(Edge("begin", "work"), Edge("work", "work", "loop", guard="more", label="items"),
               Edge("work", "done")),
        initial="begin",
        finals=("done",),
        guards=(Guard("more", "another item is waiting"),),
    )


def status(**fields: Any) -> dict[str, Any]:
    """A status.json as statetrainer writes it (a finished demo-like train run), with ``fields`` changed."""
    data: dict[str, Any] = {
        "lifecycle": "train", "state": "on_train_end", "enclosing": ["train"], "previous": "on_epoch_end",
        "epoch": 3, "num_epochs": 3, "batch": 39, "batches": 40, "global_step": 120, "status": "finished",
        "depth": 0, "metrics": {"train_loss": 0.2, "valid_loss": 0.1}, "elapsed": 1.5, "transitions": 400,
        "visits": {"training_step": 120}, "seconds": {}, "format": "statetrainer.status/1",
        "trainer": "statetrainer.demo:DigitsTrainer", "pid": os.getpid(), "updated": time.time(),
        "recent": ["on_epoch_end", "on_train_end"],
    }
    data.update(fields)
    return data


def make_run(folder: Path, **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "status.json").write_text(json.dumps(status(**fields)))
    return folder


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class Client:
    """Raw HTTP against the server: paths are sent exactly as given (no client-side normalising)."""

    def __init__(self, server: ViewServer) -> None:
        self.port = server.server_address[1]

    def request(self, path: str, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"Host": f"127.0.0.1:{self.port}", **(headers or {})})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def json(self, path: str, expect: int = 200) -> Any:
        code, _, body = self.request(path)
        assert code == expect, (path, code, body[:300])
        return json.loads(body)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


@pytest.fixture
def serve(root: Path) -> Iterator[Client]:
    server = make_server([root], "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        yield Client(server)
    finally:
        server.shutdown()
        server.server_close()


def by_name(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"].split(":", 1)[1]: r for r in runs}


# -- the runs page's data ---------------------------------------------------------------


def test_runs_are_found_recursively_with_their_derived_status(root: Path, serve: Client) -> None:
    """Every run under the root is listed; a run whose pid is gone is `died`, one with only run.json `starting`."""
    make_run(root / "done")
    make_run(root / "group" / "deeper" / "live", status="running", epoch=2, batch=9)
    make_run(root / "crashed", status="running", pid=dead_pid())
    make_run(root / "broke", status="failed", error={"state": "training_step", "message": "boom"})
    make_run(root / "halted", status="stopped")
    (root / "fresh").mkdir()
    (root / "fresh" / "run.json").write_text('{"trainer": "DigitsTrainer"}')
    (root / "not-a-run" / "checkpoints").mkdir(parents=True)
    runs = by_name(serve.json("/api/runs")["runs"])
    assert set(runs) == {"done", "group/deeper/live", "crashed", "broke", "halted", "fresh"}
    assert runs["done"]["status"] == "finished" and runs["done"]["progress"] == 1.0
    live = runs["group/deeper/live"]
    assert live["status"] == "running" and live["progress"] == pytest.approx((2 - 1 + 10 / 40) / 3)
    assert runs["crashed"]["status"] == "died" and "is gone" in runs["crashed"]["why"]
    assert runs["broke"]["status"] == "failed" and runs["broke"]["error_state"] == "training_step"
    assert runs["halted"]["status"] == "stopped"
    assert runs["fresh"]["status"] == "starting" and runs["fresh"]["trainer"] == "DigitsTrainer"


def test_a_status_from_another_host_is_not_judged_dead(root: Path, serve: Client) -> None:
    """With a `host` field naming another machine, the pid cannot be checked: still running, and why."""
    make_run(root / "remote", status="running", pid=dead_pid(), host="some-other-machine", run_id="r-1")
    row = by_name(serve.json("/api/runs")["runs"])["remote"]
    assert row["status"] == "running" and "some-other-machine" in row["why"] and row["run_id"] == "r-1"


def test_polls_get_304_until_something_changes(root: Path, serve: Client) -> None:
    """/api/runs and /api/run answer If-None-Match with a bodiless 304 while nothing changed."""
    run = make_run(root / "a", status="running", epoch=1)
    for path in ("/api/runs", "/api/run?run=0:a"):
        code, headers, _ = serve.request(path)
        assert code == 200 and headers["etag"]
        code, _, body = serve.request(path, headers={"If-None-Match": headers["etag"]})
        assert (code, body) == (304, b"")
        time.sleep(0.01)
        make_run(run, status="running", epoch=2)
        code, _, body = serve.request(path, headers={"If-None-Match": headers["etag"]})
        assert code == 200 and b'"epoch":2' in body


# -- one run ---------------------------------------------------------------------------


def test_run_detail_passes_status_through_and_adds_what_it_derives(root: Path, serve: Client) -> None:
    """/api/run holds status.json as written (unknown fields included) plus the derived summary."""
    make_run(root / "a", status="running", epoch=2, some_future_field={"x": 1}, metrics={"loss": float("nan")})
    data = serve.json("/api/run?run=0:a")
    assert data["status"]["some_future_field"] == {"x": 1}
    assert data["status"]["metrics"] == {"loss": None}  # NaN is not JSON: sent as null
    assert data["run"]["status"] == "running" and data["problems"] == []
    assert data["signatures"]["status.json"] and data["signatures"]["trace.jsonl"] is None
    assert data["ranks"][0]["rank"] == 0 and data["ranks_note"] is None


def test_stopped_run_says_where_and_why(root: Path, serve: Client) -> None:
    """A stopped run reports its state, epoch and batch, and the stop_reason when the run recorded one."""
    make_run(root / "why", status="stopped", state="on_train_end", epoch=4, stop_reason="signal SIGTERM")
    make_run(root / "unsaid", status="stopped", state="on_train_end", epoch=2)
    why = serve.json("/api/run?run=0:why")["stopped"]
    assert why == {"state": "on_train_end", "lifecycle": "train", "epoch": 4, "batch": 39,
                   "reason": "signal SIGTERM", "source": "status.json"}
    assert serve.json("/api/run?run=0:unsaid")["stopped"]["reason"] is None


def test_died_run_says_where_it_was_last_seen(root: Path, serve: Client) -> None:
    """`died` comes with the last state, epoch and batch the status recorded."""
    make_run(root / "gone", status="running", state="evaluate_batch", epoch=5, batch=3, pid=dead_pid())
    died = serve.json("/api/run?run=0:gone")["died"]
    assert (died["state"], died["epoch"], died["batch"]) == ("evaluate_batch", 5, 3)


def test_data_parallel_ranks_from_per_rank_files_or_a_note(root: Path, serve: Client) -> None:
    """Rank files beside status.json give each rank's position; without them a world_size gets a note."""
    run = make_run(root / "ddp", status="running", state="training_step", rank=0, world_size=2)
    assert "only rank 0" in serve.json("/api/run?run=0:ddp")["ranks_note"]
    (run / "status.rank1.json").write_text(json.dumps(status(status="running", state="evaluate_batch", rank=1)))
    data = serve.json("/api/run?run=0:ddp")
    assert [(r["rank"], r["state"]) for r in data["ranks"]] == [(0, "training_step"), (1, "evaluate_batch")]
    assert data["ranks_note"] is None


def test_lifecycles_fall_back_to_the_builtins_and_say_so(root: Path, serve: Client) -> None:
    """Without lifecycles.json the built-in lifecycles are sent, with a note; a custom name cannot fall back."""
    make_run(root / "old")
    data = serve.json("/api/lifecycles?run=0:old")
    assert data["source"] == "builtin" and "no lifecycles.json" in data["note"]
    assert set(data["lifecycles"]) == {"train", "evaluate", "test"}
    make_run(root / "custom-old", lifecycle="accumulate", state="micro_batch")
    data = serve.json("/api/lifecycles?run=0:custom-old")
    assert data["lifecycles"] == {} and "'accumulate' is not a built-in" in data["note"]


def write_lifecycles(run: Path, *specs: Lifecycle, **extra: Any) -> None:
    payload = {"format": "statetrainer.lifecycles/1", "trainer": "x:Toy",
               "lifecycles": {s.name: s.to_dict() for s in specs}, **extra}
    (run / "lifecycles.json").write_text(json.dumps(payload))


def test_the_runs_own_lifecycles_json_is_used(root: Path, serve: Client) -> None:
    """A custom lifecycle from lifecycles.json is sent with its transitions map and recorded callbacks."""
    run = make_run(root / "toy", lifecycle="toy", state="work")
    write_lifecycles(run, _toy(), callbacks={"toy": {"work": ["Counter"]}})
    data = serve.json("/api/lifecycles?run=0:toy")
    assert data["source"] == "lifecycles.json" and data["note"] is None
    toy = data["lifecycles"]["toy"]
    assert [s["name"] for s in toy["states"]] == ["begin", "work", "done"]
    assert toy["transitions"]["work->work"] == ["work->work", 0]
    assert {s["name"]: s["callbacks"] for s in toy["states"]}["work"] == ["Counter"]


def test_a_bad_lifecycles_json_falls_back_with_the_reason(root: Path, serve: Client) -> None:
    """An invalid lifecycles.json is reported in the note; the built-ins are drawn instead."""
    run = make_run(root / "bad")
    (run / "lifecycles.json").write_text('{"format": "statetrainer.lifecycles/1", "lifecycles": {"x": {}}}')
    data = serve.json("/api/lifecycles?run=0:bad")
    assert data["source"] == "builtin" and "invalid lifecycle" in data["note"]


def test_a_spec_with_odd_state_names_is_not_drawn(root: Path, serve: Client) -> None:
    """State names that are not identifiers never reach Graphviz: the diagram is an error, the rest works."""
    run = make_run(root / "odd", lifecycle="toy")
    spec = _toy().to_dict()
    spec["states"][1]["name"] = 'work" [image="/etc/passwd"'
    for e in spec["edges"]:
        e["source"], e["target"] = (x if x != "work" else spec["states"][1]["name"] for x in (e["source"], e["target"]))
    (run / "lifecycles.json").write_text(json.dumps({"format": "statetrainer.lifecycles/1", "lifecycles": {"toy": spec}}))
    assert serve.json("/api/lifecycles?run=0:odd")["source"] == "lifecycles.json"
    code, _, body = serve.request("/api/diagram?run=0:odd&lifecycle=toy")
    assert code == 503 and b"not identifiers" in body


@needs_dot
def test_diagram_svg_has_a_title_for_every_state_and_every_mapped_edge(root: Path, serve: Client) -> None:
    """The page finds states and edges by <title>: every state and every transitions-map title is in the SVG."""
    run = make_run(root / "toy", lifecycle="toy")
    write_lifecycles(run, _toy())
    make_run(root / "demo")
    for run_id, names in (("0:toy", ["toy"]), ("0:demo", ["train", "evaluate", "test"])):
        specs = serve.json(f"/api/lifecycles?run={run_id}")["lifecycles"]
        for name in names:
            code, headers, body = serve.request(f"/api/diagram?run={run_id}&lifecycle={name}")
            assert code == 200 and headers["content-type"] == "image/svg+xml"
            titles = [html.unescape(t) for t in re.findall(r"<title>(.*?)</title>", body.decode())]
            assert {s["name"] for s in specs[name]["states"]} <= set(titles)
            for title, nth in specs[name]["transitions"].values():
                assert titles.count(title) > nth, (name, title)
    code, _, body = serve.request("/api/diagram?run=0:toy&lifecycle=train")
    assert code == 404 and b"no lifecycle 'train'" in body


# -- metrics ----------------------------------------------------------------------------


def test_metrics_from_csv_pair_train_and_valid_names(root: Path, serve: Client) -> None:
    """metrics.csv gives every epoch; train_loss and valid_loss share a chart, seconds gets its own."""
    run = make_run(root / "m")
    (run / "metrics.csv").write_text("epoch,seconds,train_loss,valid_loss,valid_acc\n1,0.2,1.5,0.4,0.9\n"
                                     "2,0.4,0.3,0.1,0.96\n")
    data = serve.json("/api/metrics?run=0:m")
    assert data["source"] == "metrics.csv" and data["epochs"] == [1, 2]
    assert data["series"]["train_loss"] == [1.5, 0.3]
    assert {c["title"]: c["series"] for c in data["charts"]} == {
        "seconds per epoch": ["seconds"], "loss": ["train_loss", "valid_loss"], "acc": ["valid_acc"]}


def test_metrics_from_status_history_or_the_last_epoch(root: Path, serve: Client) -> None:
    """Without metrics.csv: a metrics_history in status.json if present, else the last epoch alone."""
    make_run(root / "hist", metrics_history=[{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0}])
    make_run(root / "last", epoch=7, metrics={"train_loss": 0.5})
    hist = serve.json("/api/metrics?run=0:hist")
    assert hist["epochs"] == [1, 2] and hist["series"]["train_loss"] == [2.0, 1.0]
    last = serve.json("/api/metrics?run=0:last")
    assert last["epochs"] == [7] and "last epoch only" in last["source"]


# -- the trace --------------------------------------------------------------------------


def trace_line(seq: int, state: str = "training_step", note: str | None = None) -> str:
    return json.dumps({"seq": seq, "lifecycle": "train", "state": state, "epoch": 1, "batch": seq,
                       "depth": 0, "note": note}) + "\n"


def test_trace_tail_pages_backwards_and_skips_a_half_written_line(root: Path, serve: Client) -> None:
    """limit/before page through trace.jsonl from its end; an unterminated last line is left out."""
    run = make_run(root / "t")
    text = "".join(trace_line(i, note="resume" if i == 5 else None) for i in range(10))
    (run / "trace.jsonl").write_text(text + '{"seq": 10, "lifecy')
    last = serve.json("/api/trace?run=0:t&limit=4")
    assert [e["seq"] for e in last["entries"]] == [6, 7, 8, 9] and last["bad"] == 0
    assert last["end"] == len(text) and last["size"] > len(text)
    earlier = serve.json(f"/api/trace?run=0:t&limit=4&before={last['start']}")
    assert [e["seq"] for e in earlier["entries"]] == [2, 3, 4, 5] and earlier["entries"][3]["note"] == "resume"
    first = serve.json(f"/api/trace?run=0:t&limit=4&before={earlier['start']}")
    assert [e["seq"] for e in first["entries"]] == [0, 1] and first["start"] == 0
    assert serve.json("/api/trace?run=0:t&limit=abc", expect=400)["error"].startswith("limit must be")


def test_trace_with_bad_lines_reports_them(root: Path, serve: Client) -> None:
    """Lines that are not trace entries are counted and skipped (a blank line is not counted);
    unknown fields (an edge) pass through."""
    run = make_run(root / "t")
    (run / "trace.jsonl").write_text(trace_line(0) + "not json\n[1, 2]\n{}, {}\n\n"
                                     + json.dumps({"seq": 1, "state": "x", "edge": 3, "lifecycle": "train"}) + "\n")
    data = serve.json("/api/trace?run=0:t")
    assert [e["seq"] for e in data["entries"]] == [0, 1] and data["entries"][1]["edge"] == 3
    assert data["bad"] == 3 and "3 line(s)" in data["problem"]


def test_a_100_mb_trace_is_read_from_its_end_only(root: Path, serve: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 100 MB trace.jsonl: the tail comes back with at most files.TAIL_BYTES read, whatever the size."""
    run = make_run(root / "big")
    block = "".join(trace_line(i) for i in range(10_000)).encode()
    with (run / "trace.jsonl").open("wb") as handle:
        while handle.tell() < 100 << 20:
            handle.write(block)
        handle.write(trace_line(123_456_789, "on_train_end").encode())
    read: list[int] = []
    original = files._read_back

    def counting(*args: Any) -> tuple[bytes, int]:
        data, start = original(*args)
        read.append(len(data))
        return data, start

    monkeypatch.setattr(files, "_read_back", counting)
    started = time.perf_counter()
    data = serve.json("/api/trace?run=0:big&limit=20000")
    seconds = time.perf_counter() - started
    assert data["size"] > 100 << 20 and data["start"] > 0 and data["bad"] == 0
    assert len(data["entries"]) == 20_000 and data["entries"][-1]["seq"] == 123_456_789
    assert read and max(read) <= files.TAIL_BYTES
    print(f"100 MB trace: last 20000 entries in {seconds * 1000:.0f} ms, {max(read) / 1e6:.1f} MB read")


def test_hundreds_of_runs_list_and_revalidate(root: Path, serve: Client) -> None:
    """300 runs are listed; an unchanged second poll is a 304."""
    for i in range(300):
        make_run(root / f"sweep-{i // 50}" / f"run-{i:03d}", status="running" if i % 3 else "finished")
    started = time.perf_counter()
    code, headers, body = serve.request("/api/runs")
    first = time.perf_counter() - started
    assert code == 200 and len(json.loads(body)["runs"]) == 300
    started = time.perf_counter()
    code, _, _ = serve.request("/api/runs", headers={"If-None-Match": headers["etag"]})
    assert code == 304
    print(f"300 runs: {first * 1000:.0f} ms, revalidated in {(time.perf_counter() - started) * 1000:.0f} ms")


# -- safety -----------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A run directory next to the served root: never reachable."""
    return make_run(tmp_path / "outside" / "secret-run", status="finished")


TRAVERSALS = [
    "/api/run?run=0:..",
    "/api/run?run=0:../outside/secret-run",
    "/api/run?run=0:%2e%2e/outside/secret-run",
    "/api/run?run=0:%2E%2E%2Foutside%2Fsecret-run",
    "/api/run?run=0:a/../../outside/secret-run",
    "/api/run?run=0:..%5coutside",
    "/api/run?run=0:/etc",
    "/api/run?run=/etc",
    "/api/run?run=0:%2Fetc",
    "/api/run?run=1:a",
    "/api/run?run=-1:a",
    "/api/run?run=0:a%00",
    "/api/file?run=0:a&name=../../outside/secret-run/status.json",
    "/api/file?run=0:a&name=..%2f..%2foutside%2fsecret-run%2fstatus.json",
    "/api/file?run=0:a&name=/etc/passwd",
    "/api/file?run=0:a&name=%2Fetc%2Fpasswd",
    "/api/file?run=0:a&name=model.pt",
    "/api/file?run=0:a&name=link-out.json",
    "/api/file?run=0:a&name=status.rank1.json",
    "/api/file?run=0:linked-run&name=status.json",
    "/api/run?run=0:linked-run",
    "/api/trace?run=0:../outside/secret-run",
    "/api/metrics?run=0:../outside/secret-run",
    "/api/lifecycles?run=0:../outside/secret-run",
    "/api/diagram?run=0:../outside/secret-run&lifecycle=train",
    "/static/../server.py",
    "/static/..%2fserver.py",
    "/static/%2e%2e/server.py",
    "/static/%2e%2e%2fcli.py",
    "/static//etc/passwd",
    "/static/",
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "//etc/passwd",
    "/etc/passwd",
    "/api/../api/run?run=0:../outside/secret-run",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_outside_the_run_directories_is_served(root: Path, serve: Client, outside: Path, path: str) -> None:
    """`..` (plain or URL-encoded), absolute paths, unknown names and symlinks out all get 404."""
    run = make_run(root / "a")
    (run / "link-out.json").symlink_to(outside / "status.json")
    (run / "status.rank1.json").symlink_to(outside / "status.json")
    (root / "linked-run").symlink_to(outside, target_is_directory=True)
    code, _, body = serve.request(path)
    assert code == 404, (path, code, body[:200])
    assert b"statetrainer.status/1" not in body and b"root:" not in body  # no content from outside


def test_a_symlinked_status_pointing_out_is_an_error_on_that_run(root: Path, serve: Client, outside: Path) -> None:
    """A run whose status.json links outside the roots is listed with a problem; the file is not read."""
    (root / "sneaky").mkdir()
    (root / "sneaky" / "status.json").symlink_to(outside / "status.json")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    runs = by_name(serve.json("/api/runs")["runs"])
    assert set(runs) == {"sneaky"}  # the symlinked folder is not followed
    assert runs["sneaky"]["status"] == "error" and "outside" in runs["sneaky"]["problems"][0]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head(root: Path, serve: Client, method: str) -> None:
    """Every other method is 405 and changes nothing."""
    run = make_run(root / "a")
    before = (run / "status.json").read_bytes()
    code, headers, _ = serve.request("/api/run?run=0:a", method=method, body=b"{}")
    assert code == 405 and headers["allow"] == "GET, HEAD"
    assert (run / "status.json").read_bytes() == before and sorted(os.listdir(run)) == ["status.json"]


def test_head_answers_headers_only(root: Path, serve: Client) -> None:
    """HEAD: the GET's status and headers, no body."""
    make_run(root / "a")
    code, headers, body = serve.request("/api/run?run=0:a", method="HEAD")
    assert code == 200 and int(headers["content-length"]) > 0 and body == b""


def test_foreign_host_header_is_refused(root: Path, serve: Client) -> None:
    """Bound to loopback, the server refuses a Host that is not a loopback name (DNS rebinding)."""
    make_run(root / "a")
    code, _, body = serve.request("/api/runs", headers={"Host": "attacker.example:80"})
    assert code == 403 and b"loopback" in body
    assert serve.request("/api/runs", headers={"Host": "localhost"})[0] == 200


def test_pages_and_assets_are_served_with_a_strict_policy(serve: Client) -> None:
    """The pages and their scripts come from the package; scripts only from this origin."""
    for path, kind in (("/", "text/html"), ("/run?run=0:x", "text/html"), ("/static/run.js", "javascript"),
                       ("/static/style.css", "text/css"), ("/static/favicon.svg", "image/svg+xml")):
        code, headers, body = serve.request(path)
        assert code == 200 and kind in headers["content-type"] and body
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


BAD_STATUS = [
    (b"", "unreadable"),
    (b'{"lifecycle": "train", "sta', "unreadable"),
    (b"\xff\xfe\x00garbage", "unreadable"),
    (b"[1, 2, 3]", "not written by statetrainer"),
    (b'{"format": "something/else"}', "not written by statetrainer"),
]


@pytest.mark.parametrize(("content", "problem"), BAD_STATUS)
def test_bad_files_are_errors_on_their_run_not_crashes(root: Path, serve: Client, content: bytes, problem: str) -> None:
    """A broken status.json, metrics.csv, trace and lifecycles.json: each endpoint answers, the run says why."""
    run = root / "bad"
    run.mkdir()
    (run / "status.json").write_bytes(content)
    (run / "metrics.csv").write_bytes(b"\x00\x01,,\n\xff")
    (run / "trace.jsonl").write_bytes(b"\x00\xff\n{}\n")
    (run / "lifecycles.json").write_bytes(b"{")
    make_run(root / "good")
    rows = by_name(serve.json("/api/runs")["runs"])
    assert rows["good"]["status"] == "finished"
    assert rows["bad"]["status"] == "error" and problem in rows["bad"]["problems"][0]
    detail = serve.json("/api/run?run=0:bad")
    assert detail["status"] is None and problem in detail["problems"][0]
    assert serve.json("/api/trace?run=0:bad")["bad"] == 2
    serve.json("/api/metrics?run=0:bad")
    assert "unreadable" in serve.json("/api/lifecycles?run=0:bad")["note"]
    assert serve.request("/api/runs")[0] == 200


# -- the command line -------------------------------------------------------------------


def _statetrainer(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "statetrainer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _first_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://\S+", line)
    assert match, line
    return match.group(0)


def _get(url: str) -> tuple[int, bytes]:
    from urllib.request import urlopen

    with urlopen(url, timeout=10) as response:  # noqa: S310 (a local test server)
        return response.status, response.read()


def test_serve_warns_when_exposed_and_serves(root: Path) -> None:
    """`statetrainer serve --host 0.0.0.0` prints a warning on stderr, then serves the runs."""
    make_run(root / "a")
    proc = _statetrainer("serve", str(root), "--host", "0.0.0.0", "--port", "0")
    try:
        url = _first_url(proc)
        code, body = _get(url + "api/runs")
        assert code == 200 and json.loads(body)["runs"][0]["id"] == "0:a"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "WARNING" in err and "0.0.0.0" in err


def test_inspect_web_serves_that_run_only(root: Path) -> None:
    """`statetrainer inspect RUN --web` prints the run page's URL and serves that run alone."""
    make_run(root / "a")
    make_run(root / "b")
    proc = _statetrainer("inspect", str(root / "a"), "--web")
    try:
        url = _first_url(proc)
        assert "/run?run=0%3A." in url
        code, body = _get(url.split("/run?")[0] + "/api/runs")
        assert [r["id"] for r in json.loads(body)["runs"]] == ["0:."]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_serve_refuses_a_file_and_waits_for_a_missing_folder(tmp_path: Path) -> None:
    """A file is a one-line error (exit 2); a folder not made yet is watched until runs appear in it."""
    (tmp_path / "file.txt").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "statetrainer", "serve", str(tmp_path / "file.txt")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "is not a directory" in proc.stderr
    server = make_server([tmp_path / "later"], "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        client = Client(server)
        assert client.json("/api/runs")["runs"] == []
        make_run(tmp_path / "later" / "first")
        server.app._found = (0.0, [])  # skip the discovery cache's few seconds
        assert [r["id"] for r in client.json("/api/runs")["runs"]] == ["0:first"]
    finally:
        server.shutdown()
        server.server_close()


def test_web_modules_do_not_import_torch() -> None:
    """The server starts without torch: nothing in statetrainer.web imports it."""
    code = ("import sys, statetrainer.web.server, statetrainer.web.cli, statetrainer.web.diagram; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_progress_counts_an_evaluation_pass_as_the_epochs_training_done() -> None:
    """Epoch 2 of 4 with 8 training batches: batch 3 of the training pass is 2.5/4 done; batch 1
    of the validation pass (after the epoch's training items) is 2/4, not 1.25/4."""
    from statetrainer.web.runs import progress

    base = {"epoch": 2, "num_epochs": 4, "batches": 8, "step_feed": "train"}
    assert progress({**base, "batch": 3, "feed": "train", "feed_items": 8}, "running") == pytest.approx(1.5 / 4)
    assert progress({**base, "batch": 1, "feed": "valid", "feed_items": 2}, "running") == pytest.approx(2 / 4)
    assert progress({**base, "batch": 3}, "running") == pytest.approx(1.5 / 4)  # an older status.json
