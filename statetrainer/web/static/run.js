/* The run page: the run's lifecycle diagram with the live position, replay, metrics, timings.
 *
 * Live: /api/run is polled every 250 ms (an unchanged answer is a bodiless 304), so a new
 * status.json shows within about a quarter of a second. The diagram is Graphviz's SVG of
 * the run's own lifecycle; states and edges are found by their <title> (the state name,
 * and "A->B" for an edge) and lit with CSS classes, never redrawn.
 */
"use strict";

(function () {
  const { el } = ST;
  const runId = ST.query("run") || "";
  const q = "run=" + encodeURIComponent(runId);
  const POLL_MS = 250;
  const LIT = 4; // transitions lit, newest brightest

  let detail = null; // the last /api/run answer
  let specs = null; // the last /api/lifecycles answer
  let signatures = {};
  const svgs = {}; // lifecycle name -> {key, svg, nodes: Map, edges: Map}
  let shown = null; // the lifecycle on screen
  let pinned = null; // a lifecycle the user picked with a tab
  let trace = { entries: [], start: 0, size: 0, problem: null };
  let traceStale = false;
  const replay = { active: false, index: 0, timer: null };
  let paintToken = 0;

  const $ = (id) => document.getElementById(id);

  // -- the diagram -----------------------------------------------------------------

  async function svgFor(name) {
    const spec = specs && specs.lifecycles[name];
    if (!spec) return null;
    const have = svgs[name];
    if (have && have.key === spec.key) return have;
    const response = await fetch(`/api/diagram?${q}&lifecycle=${encodeURIComponent(name)}`, { cache: "no-store" });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error || `the diagram could not be drawn (HTTP ${response.status})`);
    }
    const doc = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
    const svg = document.importNode(doc.documentElement, true);
    // Keep the viewBox, drop the fixed size: the diagram scales to its panel.
    const [w, h] = [parseFloat(svg.getAttribute("width")), parseFloat(svg.getAttribute("height"))];
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.style.maxWidth = w ? `${Math.round(w * 1.4)}px` : "";
    svg.dataset.aspect = w && h ? String(h / w) : "";
    const nodes = new Map(), edges = new Map();
    const states = new Set(spec.states.map((s) => s.name));
    // Only states and request nodes ("stop()") are lit or hovered: a legend table, a region
    // (a cluster: its own <g> beside the nodes) or anything else Graphviz draws is left alone.
    for (const g of svg.querySelectorAll("g.node")) {
      const title = ownTitle(g);
      if (!title || g.closest("g.cluster") || !(states.has(title) || REQUEST.test(title))) continue;
      nodes.set(title, g);
      hover(g, () => stateTip(name, title));
    }
    for (const g of svg.querySelectorAll("g.edge")) {
      const title = ownTitle(g);
      const [from, to] = (title || "").split("->");
      if (!to || !(states.has(from) || REQUEST.test(from)) || !states.has(to)) continue;
      edges.set(title, [...(edges.get(title) || []), g]);
    }
    for (const g of svg.querySelectorAll("g.cluster")) {
      const region = spec.regions?.[ownTitle(g)];
      if (region) { g.classList.add("region"); hover(g, () => regionTip(region)); }
    }
    svgs[name] = { key: spec.key, svg, nodes, edges };
    return svgs[name];
  }

  /** A request node's title: the request, as the diagram draws it. */
  const REQUEST = /^\w+\(\)$/;

  /** The <title> of a Graphviz group itself (not one nested in an HTML-like label's cells). */
  function ownTitle(g) {
    for (const child of g.children) if (child.localName === "title") return child.textContent;
    return null;
  }

  /** Put ``view`` on the diagram: {lifecycle, state, pairs: [[from, entryEdge], ...], failed, died, others}. */
  async function paint(view) {
    const token = ++paintToken;
    const box = $("diagram");
    const name = pinned && !replay.active ? pinned : view.lifecycle;
    let drawn;
    try {
      drawn = name ? await svgFor(name) : null;
    } catch (error) {
      if (token !== paintToken) return;
      box.replaceChildren(el("p", { class: "problem", text: error.message }));
      return;
    }
    if (token !== paintToken) return;
    if (!drawn) {
      const why = !specs ? "loading…" : name ? `no diagram for lifecycle ${name}` : "the run has not started a lifecycle yet";
      box.replaceChildren(el("p", { class: "muted", text: why }));
      box.dataset.state = "";
      return;
    }
    if (box.firstElementChild !== drawn.svg) box.replaceChildren(drawn.svg);
    shown = name;
    renderLegend(name, view);
    renderTabs();
    for (const g of drawn.svg.querySelectorAll(".current, .failed, .died, .other-rank, [class*=lit]")) {
      g.classList.remove("current", "failed", "died", "other-rank", "lit0", "lit1", "lit2", "lit3");
    }
    const onThis = view.lifecycle === name;
    const state = onThis ? visible(name, view.state) : null;
    const node = state && drawn.nodes.get(state);
    if (node) {
      node.classList.add(view.failed ? "failed" : view.died ? "died" : "current");
      if (view.failed) node.classList.add("current");
    }
    if (onThis) litEdges(name, drawn, view.pairs);
    for (const other of onThis ? view.others || [] : []) drawn.nodes.get(visible(name, other))?.classList.add("other-rank");
    box.dataset.state = node ? state : "";
    box.dataset.lifecycle = name;
    box.dataset.mode = replay.active ? "replay" : "live";
    if (node) keepInView(box, node);
    markStateRow(view.state);
  }

  /** Scroll the diagram (not the page) so that the lit node is visible. */
  function keepInView(box, node) {
    const outer = box.getBoundingClientRect(), inner = node.getBoundingClientRect();
    if (inner.top < outer.top + 10 || inner.bottom > outer.bottom - 10) {
      box.scrollTop += inner.top - outer.top - outer.height / 2 + inner.height / 2;
    }
    if (inner.left < outer.left || inner.right > outer.right) {
      box.scrollLeft += inner.left - outer.left - outer.width / 2 + inner.width / 2;
    }
  }

  /** ``state``, or its nearest enclosing compound drawn in the diagram. */
  function visible(name, state) {
    const drawn = svgs[name], spec = specs?.lifecycles[name];
    const parents = new Map((spec?.states || []).map((s) => [s.name, s.parent]));
    for (let s = state, guard = 0; s && guard < 50; s = parents.get(s), guard++) {
      if (drawn?.nodes.has(s)) return s;
    }
    return null;
  }

  function litEdges(name, drawn, pairs) {
    const spec = specs.lifecycles[name];
    pairs.slice(-LIT).reverse().forEach(([from, to, edge], age) => {
      // The edge the trace names, when it joins these two states (else the lifecycle changed
      // between them): exactly the edge taken; otherwise the edge the map picks for the pair.
      const named = Number.isInteger(edge) ? spec.edges[edge] : null;
      const hit = named && (named[5] === undefined || (named[5] === from && named[6] === to)) ? named : spec.transitions[`${from}->${to}`];
      if (!hit) return;
      const candidates = drawn.edges.get(hit[0]) || [];
      const g = candidates[Math.min(hit[1], candidates.length - 1)];
      // An edge taken twice in the window keeps its newest (brightest) mark.
      if (g && ![0, 1, 2, 3].some((k) => g.classList.contains("lit" + k))) g.classList.add("lit" + age);
    });
  }

  // -- the legend: what this diagram's markings mean -------------------------------------

  let legendFor = null;

  /** The markings the shown diagram uses (from the spec), and the live ones that apply. */
  function renderLegend(name, view) {
    const spec = specs.lifecycles[name];
    const box = $("legend");
    box.querySelector("[data-key=died]").hidden = !view.died;
    box.querySelector("[data-key=other-rank]").hidden = !(view.others || []).length;
    if (legendFor === spec.key + name) return;
    legendFor = spec.key + name;
    const used = spec.legend || {};
    const item = (key, keyNode, ...text) => el("span", { class: "item", "data-key": key }, keyNode, " ", ...text);
    const words = used.words || [];
    const sample = words.slice(0, 2).join(" · ") || "epoch opens";
    $("legend-drawing").replaceChildren(...[
      ...(used.tiers || []).map(([tier, colour, meaning]) => {
        const swatch = el("span", { class: "key tier" });
        swatch.style.background = colour;
        return item("tier-" + tier, swatch, meaning);
      }),
      used.resumable ? item("resumable", el("span", { class: "key double" }), "double border: resumable") : null,
      used.no_grad ? item("no_grad", el("span", { class: "key region" }), "grey region: no grad") : null,
      words.length ? item("roles", el("span", { class: "key role-line", text: sample }), "second line: roles and data feeds") : null,
      used.guards ? item("guards", el("code", { class: "key-text", text: "[guard]" }), "taken when the guard holds") : null,
      used.extensions ? item("extensions", el("span", { class: "key dashed" }), "grey dashed: edges the seed leaves implicit") : null,
      used.requests ? item("requests", el("code", { class: "key-text grey", text: "stop()" }), "a control request") : null,
    ].filter(Boolean));
    const roles = (used.roles || []).map(([word, role, meaning]) => el("span", { class: "role", "data-role": role },
      el("span", { class: "role-word", text: word }), " " + meaning));
    const feeds = (used.feeds || []).map((feed) => el("span", { class: "role", "data-role": "feed" },
      el("span", { class: "role-word", text: `opens · takes · closes ${feed}` }),
      ` a pass over the data feed ${feed} begins, takes its next item, ends`));
    $("legend-roles").replaceChildren(...roles, ...feeds);
    $("legend-roles").hidden = !roles.length && !feeds.length;
  }

  function renderTabs() {
    const tabs = $("tabs");
    if (!specs) return;
    const current = detail?.status?.lifecycle;
    tabs.replaceChildren(...Object.keys(specs.lifecycles).map((name) => el("button", {
      class: "tab" + (name === shown ? " active" : "") + (name === current ? " running" : ""),
      title: name === current ? "the run is in this lifecycle" : "show this lifecycle",
      onclick: () => { pinned = name === current ? null : name; refresh(); },
    }, name)));
  }

  // -- the tooltip on states and regions ----------------------------------------------

  function hover(g, rows) {
    g.addEventListener("mouseenter", (event) => showTip(event, rows()));
    g.addEventListener("mousemove", (event) => placeTip(event));
    g.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  }

  function showTip(event, rows) {
    const tip = $("tooltip");
    tip.replaceChildren(...rows);
    tip.hidden = false;
    placeTip(event);
  }

  /** A state's docs, tier, roles and feeds (as the diagram marks them), visits, time and callbacks. */
  function stateTip(lifecycle, name) {
    const spec = specs?.lifecycles[lifecycle];
    const info = spec?.states.find((s) => s.name === name);
    const status = detail?.status || {};
    const rows = [el("div", { class: "tip-head" }, el("b", { text: name }),
      info?.tier ? el("span", { class: "tip-tier tier-" + info.tier, text: tierText(spec, info.tier) }) : null)];
    if (!info) {
      rows.push(el("div", { class: "muted", text: "a control request: the machine takes these edges when it is made" }));
      return rows;
    }
    if (info.doc) rows.push(el("div", { text: info.doc }));
    const chain = [];
    for (let p = info.parent; p; p = spec.states.find((s) => s.name === p)?.parent) chain.unshift(p);
    if (chain.length) rows.push(el("div", { class: "muted", text: "inside " + chain.join(" › ") }));
    const marks = info.marks || [];
    if (marks.length) {
      rows.push(el("div", { class: "tip-roles" }, ...marks.map(([word, role, meaning]) => el("div", { class: "tip-role", "data-role": role },
        el("span", { class: "role-word", text: word }), " ", meaning))));
    } else {
      rows.push(el("div", { class: "muted", text: "roles: none" }));
    }
    if (info.no_grad_region && !info.roles.includes("no_grad")) {
      rows.push(el("div", { class: "tip-role", "data-role": "no_grad" }, el("span", { class: "role-word", text: "no grad" }),
        ` inside ${info.no_grad_region}'s region: runs without grad`));
    }
    const visits = status.lifecycle === lifecycle || !status.lifecycle ? status.visits?.[name] : undefined;
    const seconds = status.seconds?.[name];
    rows.push(el("div", { text: `visits: ${visits ?? "–"}` + (seconds !== undefined ? ` · time: ${ST.duration(seconds)}` : "") }));
    rows.push(info.callbacks.length
      ? el("div", {}, "callbacks: ", el("code", { text: info.callbacks.join(", ") }))
      : el("div", { class: "muted", text: "callbacks: " + (specs.callbacks_recorded ? "none" : "not recorded by this run") }));
    return rows;
  }

  function regionTip(region) {
    return [el("b", { text: "no grad" }),
      el("div", { text: `${region.root} and everything inside it run under torch.no_grad(); resuming inside restores it` }),
      el("div", { class: "muted", text: region.states.join(", ") })];
  }

  function tierText(spec, tier) {
    return (spec.legend?.tiers || []).find((t) => t[0] === tier)?.[2] || tier;
  }

  function placeTip(event) {
    const tip = $("tooltip");
    const panel = tip.parentElement.getBoundingClientRect();
    tip.style.left = Math.max(0, Math.min(event.clientX - panel.left + 14, panel.width - tip.offsetWidth - 4)) + "px";
    // Below the pointer, or above it when the tooltip would leave the window.
    const below = event.clientY + 14 + tip.offsetHeight <= window.innerHeight;
    tip.style.top = (below ? event.clientY - panel.top + 14 : event.clientY - panel.top - 10 - tip.offsetHeight) + "px";
  }

  // -- live ---------------------------------------------------------------------------

  function liveView() {
    const s = detail?.status;
    if (!s) return { lifecycle: null, state: null, pairs: [] };
    const recent = s.recent || [], taken = s.recent_edges || [];
    const pairs = recent.slice(1).map((to, i) => [recent[i], to, taken[i + 1] ?? null]);
    const status = detail.run.status;
    const failed = status === "failed";
    const state = failed ? s.error?.state || s.state : s.state;
    const others = (detail.ranks || []).slice(1).filter((r) => r.lifecycle === s.lifecycle && r.state && r.state !== s.state).map((r) => r.state);
    return { lifecycle: s.lifecycle, state, pairs, failed, died: status === "died", others };
  }

  function refresh() {
    renderFacts();
    renderTimeline();
    if (replay.active) return paint(replayView());
    return paint(liveView());
  }

  function fact(id, text) { $(id).textContent = text; }

  function renderFacts() {
    const run = detail?.run || {};
    const s = detail?.status || {};
    document.title = "statetrainer · " + (run.name || runId);
    fact("run-name", run.name || runId);
    $("run-name").title = run.root ? `${run.root} › ${run.name}` : "";
    $("run-status").replaceChildren(ST.badge(run.status));
    fact("trainer", [s.trainer || run.trainer, s.run_id ? "run " + s.run_id : null, s.host ? "on " + s.host : null, s.pid ? "pid " + s.pid : null].filter(Boolean).join(" · "));
    fact("f-state", s.state || "–");
    fact("f-enclosing", [s.lifecycle && "lifecycle " + s.lifecycle, s.enclosing?.length && "inside " + s.enclosing.join(" › ")]
      .filter(Boolean).join(" · "));
    fact("f-epoch", ST.of(s.epoch, s.num_epochs));
    const otherFeed = s.feed && s.step_feed && s.feed !== s.step_feed;  // e.g. valid, during an evaluation
    fact("f-batch", otherFeed ? `${ST.of(s.batch, s.feed_items)} of ${s.feed}` : ST.of(s.batch, s.batches));
    fact("f-step", ST.num(s.global_step));
    fact("f-rate", ST.rate(run.rate));
    fact("f-eta", run.eta === null || run.eta === undefined ? "–" : ST.duration(run.eta));
    fact("f-elapsed", ST.duration(s.elapsed));
    tickAge();
    $("f-progress").replaceChildren(ST.progressBar(run.progress ?? null, run.status),
      el("small", { text: run.progress === null || run.progress === undefined ? "" : Math.round(run.progress * 100) + "%" }));
  }

  function tickAge() {
    const updated = detail?.status?.updated;
    fact("f-updated", updated ? ST.age(ST.serverNow() - updated) : "–");
  }

  function renderAlerts() {
    const box = $("alerts");
    const out = [];
    const s = detail?.status || {};
    for (const p of detail?.problems || []) out.push(el("div", { class: "alert error" }, el("b", { text: "This run cannot be read: " }), p));
    const status = detail?.run?.status;
    if (status === "failed" && s.error) out.push(failurePanel(s.error, s));
    else if (status === "failed") out.push(el("div", { class: "alert failed" }, el("b", { text: "Failed " }), `in state ${s.state} (no error details recorded)`));
    if (detail?.stopped) out.push(stoppedPanel(detail.stopped));
    if (detail?.died) out.push(diedPanel(detail.died));
    if (detail?.run?.why && status !== "died") out.push(el("div", { class: "alert info", text: detail.run.why }));
    box.replaceChildren(...out);
  }

  function where(x) {
    return [x.lifecycle && `lifecycle ${x.lifecycle}`, x.epoch !== null && x.epoch !== undefined && `epoch ${x.epoch}`,
      x.batch !== null && x.batch !== undefined && `batch ${x.batch}`].filter(Boolean).join(", ");
  }

  function failurePanel(error, s) {
    return el("div", { class: "alert failed", id: "failure" },
      el("div", {}, el("b", { text: "Failed in state " }), el("code", { class: "failed-state", text: error.state || s.state || "?" }),
        error.callback ? [" — callback ", el("code", { text: error.callback })] : "",
        ` — ${where({ lifecycle: s.lifecycle, epoch: error.epoch, batch: error.batch })}`),
      el("div", { class: "message", text: error.message || "" }),
      el("details", { open: true }, el("summary", { text: "traceback" }), el("pre", { class: "traceback", text: error.traceback || "(none recorded)" })));
  }

  function stoppedPanel(stop) {
    return el("div", { class: "alert stopped", id: "stopped" },
      el("b", { text: "Stopped " }), "at ", el("code", { text: stop.state || "?" }), ` (${where(stop)}). `,
      stop.reason ? ["Why: ", el("b", { text: stop.reason }), stop.source ? ` (from ${stop.source})` : ""]
        : el("span", { class: "muted", text: "Why: not recorded by this run (status.json has no stop_reason)." }));
  }

  function diedPanel(died) {
    const ago = died.updated ? ST.age(ST.serverNow() - died.updated) : "";
    return el("div", { class: "alert died", id: "died" },
      el("b", { text: "Died. " }), died.why || "the process is gone", ". It was last seen in ",
      el("code", { text: died.state || "?" }), ` (${where(died)}), ${ago}.`,
      " The status file cannot say more: look at events.jsonl and the process's output.");
  }

  function renderTimeline() {
    const list = $("timeline");
    if (replay.active) {
      const from = Math.max(0, replay.index - 9);
      const items = trace.entries.slice(from, replay.index + 1).map((e, i, all) => timelineItem(
        e.state, `#${e.seq} · ${e.lifecycle}` + (e.epoch !== null && e.epoch !== undefined ? ` · e${e.epoch}` : "") +
        (e.batch !== null && e.batch !== undefined ? ` b${e.batch}` : "") + (e.note ? ` · ${e.note}` : ""), all.length - 1 - i));
      list.replaceChildren(...items);
      return;
    }
    const s = detail?.status || {};
    const recent = s.recent || [];
    list.replaceChildren(...recent.map((state, i) => timelineItem(state,
      i === recent.length - 1 ? `now · ${where(s)}` : "", recent.length - 1 - i)));
  }

  function timelineItem(state, meta, age) {
    const item = el("li", { class: "age" + Math.min(age, 6) + (age === 0 ? " now" : "") },
      el("span", { class: "dot" }), el("code", { text: state }), meta ? el("small", { class: "muted", text: meta }) : null);
    item.addEventListener("mouseenter", () => highlightNode(state, true));
    item.addEventListener("mouseleave", () => highlightNode(state, false));
    return item;
  }

  function highlightNode(state, on) {
    svgs[shown]?.nodes.get(state)?.classList.toggle("hover", on);
  }

  function renderStates() {
    const s = detail?.status || {};
    const visits = s.visits || {}, seconds = s.seconds || {};
    const hasTime = Object.keys(seconds).length > 0;
    const names = [...new Set([...Object.keys(visits), ...Object.keys(seconds)])];
    names.sort((a, b) => (seconds[b] || 0) - (seconds[a] || 0) || (visits[b] || 0) - (visits[a] || 0));
    const total = Object.values(hasTime ? seconds : visits).reduce((x, y) => x + y, 0) || 1;
    $("states-note").textContent = hasTime
      ? "time in each state's callbacks, from the run's StateTimer"
      : "visits only: per-state time is recorded when a StateTimer is attached (statetrainer demo --profile)";
    const head = el("tr", {}, el("th", { text: "state" }), el("th", { class: "num", text: "visits" }),
      hasTime ? el("th", { class: "num", text: "time" }) : null, el("th", { text: "share" }));
    $("states").replaceChildren(head, ...names.map((name) => {
      const share = (hasTime ? seconds[name] || 0 : visits[name] || 0) / total;
      const bar = el("div", { class: "share" });
      bar.style.width = (share * 100).toFixed(1) + "%";
      const row = el("tr", { "data-state": name }, el("td", {}, el("code", { text: name })),
        el("td", { class: "num", text: ST.num(visits[name]) }),
        hasTime ? el("td", { class: "num", text: ST.duration(seconds[name]) }) : null,
        el("td", { class: "share-cell", title: (share * 100).toFixed(1) + "%" }, bar));
      row.addEventListener("mouseenter", () => highlightNode(name, true));
      row.addEventListener("mouseleave", () => highlightNode(name, false));
      return row;
    }));
  }

  /** Mark the table row of the state on the diagram (live or replayed). */
  function markStateRow(state) {
    for (const row of $("states").querySelectorAll("tr[data-state]")) {
      row.classList.toggle("current-row", row.dataset.state === state);
    }
  }

  function renderRanks() {
    const ranks = detail?.ranks || [];
    const note = detail?.ranks_note;
    $("ranks-panel").hidden = ranks.length < 2 && !note;
    $("ranks-note").hidden = !note;
    $("ranks-note").textContent = note || "";
    const first = ranks[0] || {};
    const head = el("tr", {}, ...["rank", "state", "epoch", "batch", "step", "updated"].map((t) => el("th", { text: t })));
    $("ranks").replaceChildren(head, ...ranks.map((r) => el("tr", {
      class: r.state !== first.state || r.epoch !== first.epoch || r.batch !== first.batch ? "differs" : "",
    }, el("td", { text: r.rank }), el("td", {}, el("code", { text: r.state || "–" }), r.problem ? el("div", { class: "problem", text: r.problem }) : null),
    el("td", { text: ST.num(r.epoch) }), el("td", { text: ST.num(r.batch) }), el("td", { text: ST.num(r.global_step) }),
    el("td", { text: r.updated ? ST.age(ST.serverNow() - r.updated) : "–" }))));
  }

  function renderFiles() {
    const names = ["status.json", "run.json", "trace.jsonl", "metrics.csv", "events.jsonl", "lifecycles.json"];
    const present = names.filter((n) => signatures[n]);
    $("files").replaceChildren(...present.flatMap((n, i) => [i ? " · " : "",
      el("a", { href: `/api/file?${q}&name=${encodeURIComponent(n)}`, text: n })]),
    present.length ? "" : "none yet");
  }

  // -- metrics --------------------------------------------------------------------------

  async function loadMetrics() {
    try {
      const table = await ST.getJSON(`/api/metrics?${q}`);
      $("metrics-source").textContent = table.source ? "from " + table.source : "";
      const box = $("charts");
      if (table.problem) { box.replaceChildren(el("p", { class: "problem", text: table.problem })); return; }
      if (!table.charts.length) { box.replaceChildren(el("p", { class: "muted", text: "no metrics yet" })); return; }
      box.replaceChildren(...table.charts.map((c) => el("figure", { class: "chart-box" }, Chart.line(c.title, c.series, table))));
    } catch (error) {
      $("charts").replaceChildren(el("p", { class: "problem", text: "metrics: " + error.message }));
    }
  }

  // -- lifecycles -----------------------------------------------------------------------

  async function loadLifecycles() {
    try {
      specs = await ST.getJSON(`/api/lifecycles?${q}`);
      specs.hasCallbacks = Object.values(specs.lifecycles).some((l) => l.states.some((s) => s.callbacks.length));
      const note = $("spec-note");
      note.hidden = !specs.note;
      note.textContent = specs.note ? "Note: " + specs.note + "." : "";
    } catch (error) {
      $("diagram").replaceChildren(el("p", { class: "problem", text: "lifecycles: " + error.message }));
    }
  }

  // -- replay ---------------------------------------------------------------------------

  async function loadTrace(before) {
    try {
      const url = `/api/trace?${q}` + (before !== undefined ? `&before=${before}` : "");
      const part = await ST.getJSON(url);
      if (before !== undefined) {
        trace = { ...part, entries: [...part.entries, ...trace.entries], end: trace.end, size: trace.size };
        replay.index += part.entries.length;
      } else {
        trace = part;
        if (!replay.active) replay.index = Math.max(0, trace.entries.length - 1);
      }
      traceStale = false;
      const bar = $("scrubber");
      bar.max = String(Math.max(0, trace.entries.length - 1));
      bar.value = String(replay.index);
      renderReplayInfo();
    } catch (error) {
      $("replay-info").textContent = "trace: " + error.message;
    }
  }

  function replayView() {
    const e = trace.entries[replay.index];
    if (!e) return liveView();
    const pairs = [];
    for (let i = Math.max(1, replay.index - LIT + 1); i <= replay.index; i++) {
      const a = trace.entries[i - 1], b = trace.entries[i];
      if (a.lifecycle === b.lifecycle && b.note !== "resume") pairs.push([a.state, b.state, b.edge]);
    }
    const last = replay.index === trace.entries.length - 1;
    const failed = last && detail?.run?.status === "failed";
    return { lifecycle: e.lifecycle, state: e.state, pairs, failed, died: false, others: [] };
  }

  function renderReplayInfo() {
    const info = $("replay-info");
    const n = trace.entries.length;
    $("r-earlier").hidden = !(trace.start > 0);
    $("r-failure").disabled = detail?.run?.status !== "failed";
    $("r-resume").disabled = !trace.entries.some((e) => e.note === "resume");
    if (!n) { info.textContent = trace.problem || "the trace is empty"; return; }
    const e = trace.entries[replay.index] || {};
    const mb = (trace.size / 1e6).toFixed(trace.size > 1e6 ? 1 : 3);
    const scope = trace.start > 0 ? `the last ${n} entries of trace.jsonl (${mb} MB)` : `all ${n} entries of trace.jsonl`;
    info.replaceChildren(
      replay.active ? el("b", { text: `entry ${replay.index + 1} of ${n}: ` }) : el("span", { text: "replay " + scope + " — " }),
      replay.active ? el("code", { id: "replay-state", text: e.state }) : "drag the slider or press play",
      replay.active ? ` · #${e.seq} · ${e.lifecycle}` + (e.epoch !== null && e.epoch !== undefined ? ` · epoch ${e.epoch}` : "") +
        (e.batch !== null && e.batch !== undefined ? ` · batch ${e.batch}` : "") + (e.depth ? ` · depth ${e.depth}` : "") : "",
      replay.active && e.note ? el("span", { class: "badge note", text: e.note }) : "",
      traceStale && replay.active ? el("span", { class: "muted", text: " · the trace has grown: ⏭ reloads it" }) : "",
      trace.problem ? el("div", { class: "problem", text: trace.problem }) : "");
  }

  function enterReplay() {
    if (replay.active) return;
    replay.active = true;
    $("mode").textContent = "replay";
    $("mode").className = "mode replay";
    document.body.classList.add("replaying");
  }

  function goLive() {
    stopPlaying();
    replay.active = false;
    $("mode").textContent = "live";
    $("mode").className = "mode live";
    document.body.classList.remove("replaying");
    if (traceStale) loadTrace();
    renderReplayInfo();
    refresh();
  }

  function seek(index) {
    enterReplay();
    replay.index = Math.max(0, Math.min(index, trace.entries.length - 1));
    $("scrubber").value = String(replay.index);
    renderReplayInfo();
    refresh();
  }

  function stopPlaying() {
    clearInterval(replay.timer);
    replay.timer = null;
    $("r-play").textContent = "▶ play";
  }

  function play() {
    if (replay.timer) return stopPlaying();
    if (!trace.entries.length) return;
    if (!replay.active || replay.index >= trace.entries.length - 1) seek(0);
    $("r-play").textContent = "❚❚ pause";
    replay.timer = setInterval(() => {
      if (replay.index >= trace.entries.length - 1) return stopPlaying();
      seek(replay.index + 1);
    }, 1000 / parseFloat($("r-speed").value));
  }

  function jumpToResume() {
    const n = trace.entries.length;
    for (let k = 1; k <= n; k++) {
      const i = (replay.active ? replay.index : -1) + k;
      if (trace.entries[i % n]?.note === "resume") return seek(i % n);
    }
  }

  function jumpToFailure() {
    const error = detail?.status?.error || {};
    for (let i = trace.entries.length - 1; i >= 0; i--) {
      const e = trace.entries[i];
      if (!error.state || (e.state === error.state && (error.epoch === null || error.epoch === undefined || e.epoch === error.epoch))) return seek(i);
    }
    seek(trace.entries.length - 1);
  }

  function wireReplay() {
    $("scrubber").addEventListener("input", (event) => { stopPlaying(); seek(parseInt(event.target.value, 10)); });
    $("r-first").addEventListener("click", () => { stopPlaying(); seek(0); });
    $("r-prev").addEventListener("click", () => { stopPlaying(); seek(replay.index - 1); });
    $("r-next").addEventListener("click", () => { stopPlaying(); seek(replay.index + 1); });
    $("r-last").addEventListener("click", async () => {
      stopPlaying();
      if (traceStale) await loadTrace();
      seek(trace.entries.length - 1);
    });
    $("r-play").addEventListener("click", play);
    $("r-live").addEventListener("click", goLive);
    $("r-resume").addEventListener("click", () => { stopPlaying(); jumpToResume(); });
    $("r-failure").addEventListener("click", () => { stopPlaying(); jumpToFailure(); });
    $("r-earlier").addEventListener("click", () => loadTrace(trace.start));
    $("r-speed").addEventListener("change", () => { if (replay.timer) { stopPlaying(); play(); } });
    document.addEventListener("keydown", (event) => {
      if (event.target.matches("input, select, textarea")) return;
      if (event.key === "ArrowLeft") seek(replay.index - 1);
      else if (event.key === "ArrowRight") seek(replay.index + 1);
      else if (event.key === "Escape") goLive();
    });
  }

  // -- polling --------------------------------------------------------------------------

  async function onDetail(data) {
    const before = signatures;
    detail = data;
    signatures = data.signatures || {};
    ST.setServerNow(data.now);
    $("conn").className = "conn ok";
    if (!specs || before["lifecycles.json"] !== signatures["lifecycles.json"]) await loadLifecycles();
    if (before["metrics.csv"] !== signatures["metrics.csv"] || !before["status.json"]) loadMetrics();
    else if (!signatures["metrics.csv"] && before["status.json"] !== signatures["status.json"]) loadMetrics();
    if (before["trace.jsonl"] !== signatures["trace.jsonl"]) {
      if (replay.active) { traceStale = true; renderReplayInfo(); } else loadTrace();
    }
    renderAlerts();
    renderStates();
    renderRanks();
    renderFiles();
    renderReplayInfo();
    await refresh();
  }

  function onError(error) {
    $("conn").className = "conn lost";
    $("conn").title = "server unreachable: " + error.message;
    if (!detail) $("diagram").replaceChildren(el("p", { class: "problem", text: error.message }));
  }

  wireReplay();
  $("zoom").addEventListener("click", () => {
    const fit = $("diagram").classList.toggle("fit");
    $("zoom").textContent = fit ? "full size" : "fit";
    localStorage.setItem("statetrainer.fit", fit ? "1" : "");
  });
  if (localStorage.getItem("statetrainer.fit")) $("zoom").click();
  setInterval(tickAge, 1000);
  window.statetrainerView = { poller: new ST.Poller(`/api/run?${q}`, POLL_MS, onDetail, onError).start(), replay, seek, goLive };
})();
