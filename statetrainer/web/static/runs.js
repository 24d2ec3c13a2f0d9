/* The runs page: every run under the served folders, sortable, filterable, polled each second. */
"use strict";

(function () {
  const { el } = ST;
  const tbody = document.querySelector("#runs tbody");
  const saved = JSON.parse(localStorage.getItem("statetrainer.sort") || "null");
  const sort = saved || { key: "updated", descending: true };
  let rows = [];
  let severalRoots = false;

  // Order for the status column: what needs attention first.
  const STATUS_ORDER = ["failed", "died", "error", "running", "stopping", "starting", "stopped", "finished"];

  function value(row, key) {
    if (key === "status") {
      const i = STATUS_ORDER.indexOf(row.status);
      return i < 0 ? STATUS_ORDER.length : i;
    }
    if (key === "epoch") return row.epoch === null || row.epoch === undefined ? -1 : row.epoch;
    const v = row[key];
    return v === null || v === undefined ? (typeof rows[0]?.[key] === "string" ? "" : -Infinity) : v;
  }

  function compare(a, b) {
    const x = value(a, sort.key), y = value(b, sort.key);
    const order = typeof x === "string" || typeof y === "string" ? String(x).localeCompare(String(y)) : x - y;
    return (sort.descending ? -order : order) || a.name.localeCompare(b.name);
  }

  function matches(row, text) {
    if (!text) return true;
    const hay = [row.name, row.trainer, row.status, row.state, row.lifecycle].join(" ").toLowerCase();
    return text.toLowerCase().split(/\s+/).every((word) => hay.includes(word));
  }

  function cellFor(row) {
    const now = ST.serverNow();
    const problem = row.problems && row.problems.length ? el("div", { class: "problem", text: row.problems.join("; ") }) : null;
    const why = row.why ? el("div", { class: "muted small", text: row.why }) : null;
    const stateCell = row.status === "failed" && row.error_state
      ? el("td", { class: "state failed-state", text: row.error_state, title: "the failing state" })
      : el("td", { class: "state", text: row.state || "–" });
    return el("tr", { "data-id": row.id, "data-status": row.status },
      el("td", { class: "name" }, el("a", { href: ST.runUrl(row.id), text: row.name, title: row.root + "/" + row.name }),
        severalRoots ? el("div", { class: "muted small", text: "in " + row.root }) : null, problem),
      el("td", { class: "trainer", text: (row.trainer || "–").replace(/^.*:/, ""), title: row.trainer || "" }),
      el("td", { text: row.lifecycle || "–" }),
      el("td", {}, ST.badge(row.status), why),
      stateCell,
      el("td", { class: "num", text: ST.of(row.epoch, row.num_epochs) }),
      el("td", {}, ST.progressBar(row.progress ?? null, row.status)),
      el("td", { class: "num", text: ST.rate(row.rate) }),
      el("td", { class: "num", text: row.eta === null || row.eta === undefined ? "–" : ST.duration(row.eta) }),
      el("td", { class: "num age", "data-updated": row.updated ?? "", text: row.updated ? ST.age(now - row.updated) : "–" }));
  }

  function render() {
    const text = document.getElementById("filter").value.trim();
    const shown = rows.filter((r) => matches(r, text)).sort(compare);
    tbody.replaceChildren(...shown.map(cellFor));
    document.getElementById("empty").hidden = rows.length > 0;
    const counts = {};
    for (const r of rows) counts[r.status] = (counts[r.status] || 0) + 1;
    document.getElementById("counts").replaceChildren(
      el("span", { text: `${rows.length} run${rows.length === 1 ? "" : "s"}` }),
      ...Object.entries(counts).map(([s, n]) => el("span", {}, ST.badge(s), ` ${n}`)));
    for (const th of document.querySelectorAll("#runs th")) {
      th.classList.toggle("sorted", th.dataset.key === sort.key);
      th.classList.toggle("descending", th.dataset.key === sort.key && sort.descending);
    }
  }

  for (const th of document.querySelectorAll("#runs th")) {
    th.addEventListener("click", () => {
      sort.descending = sort.key === th.dataset.key ? !sort.descending : ["updated", "progress", "rate"].includes(th.dataset.key);
      sort.key = th.dataset.key;
      localStorage.setItem("statetrainer.sort", JSON.stringify(sort));
      render();
    });
  }
  document.getElementById("filter").addEventListener("input", render);

  // Ages tick every second without a request.
  setInterval(() => {
    const now = ST.serverNow();
    for (const cell of document.querySelectorAll("td.age[data-updated]")) {
      const t = parseFloat(cell.dataset.updated);
      if (t) cell.textContent = ST.age(now - t);
    }
  }, 1000);

  const conn = document.getElementById("conn");
  new ST.Poller("/api/runs", 1000, (data) => {
    ST.setServerNow(data.now);
    rows = data.runs;
    severalRoots = data.roots.length > 1;
    document.getElementById("roots").textContent = "serving runs under " + data.roots.join(", ");
    conn.className = "conn ok";
    conn.title = "connected";
    render();
  }, (error) => {
    conn.className = "conn lost";
    conn.title = "server unreachable: " + error.message;
  }).start();
})();
