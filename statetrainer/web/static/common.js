/* statetrainer web view: helpers shared by the runs page and the run page.
 *
 * No framework and no build step: the pages are small, ship inside the Python package
 * and must work offline. Text from run files is only ever set with textContent (never
 * innerHTML), so a crafted state name or traceback cannot inject markup.
 */
"use strict";

const ST = {};

/** Build an element: el("td", {class: "x", title: "…"}, child, "text", …). */
ST.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

/** GET a JSON endpoint; throws an Error carrying the server's message. */
ST.getJSON = async function (url) {
  const response = await fetch(url, { cache: "no-store" });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
};

/**
 * Poll a JSON endpoint with If-None-Match: an unchanged answer is a bodiless 304.
 * Why polling and not server-sent events: a poll holds no connection open, so any number
 * of tabs work (browsers allow six connections per host over HTTP/1.1), the server keeps
 * no thread per viewer, and an unchanged poll costs the server a few stat() calls.
 */
ST.Poller = class {
  constructor(url, interval, onData, onError) {
    this.url = url;
    this.interval = interval;
    this.onData = onData;
    this.onError = onError || (() => {});
    this.etag = null;
    this.timer = null;
    this.stopped = false;
  }
  start() { this.tick(); return this; }
  stop() { this.stopped = true; clearTimeout(this.timer); }
  /** Fetch now (also when nothing changed on disk, e.g. after a reconnect). */
  async tick() {
    clearTimeout(this.timer);
    try {
      const headers = this.etag ? { "If-None-Match": this.etag } : {};
      const response = await fetch(this.url, { cache: "no-store", headers });
      if (response.status !== 304) {
        const data = await response.json();
        if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
        this.etag = response.headers.get("ETag");
        this.onData(data);
      }
    } catch (error) {
      this.etag = null;
      this.onError(error);
    }
    if (!this.stopped) {
      const wait = document.hidden ? Math.max(this.interval, 2000) : this.interval;
      this.timer = setTimeout(() => this.tick(), wait);
    }
  }
};

ST.query = function (name) {
  return new URLSearchParams(location.search).get(name);
};

ST.runUrl = function (id) {
  return "/run?run=" + encodeURIComponent(id);
};

/** "3.2 s", "4 min 05 s", "2 h 10 min". */
ST.duration = function (seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, seconds);
  if (seconds < 10) return seconds.toFixed(1) + " s";
  if (seconds < 60) return Math.round(seconds) + " s";
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return `${m} min ${String(s).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
};

ST.age = function (seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  return seconds < 1.5 ? "just now" : ST.duration(seconds) + " ago";
};

ST.rate = function (perSecond) {
  if (!perSecond) return "–";
  return perSecond >= 100 ? Math.round(perSecond) + " steps/s" : perSecond.toPrecision(3) + " steps/s";
};

ST.num = function (value, digits) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1000 || Math.abs(value) < 0.001 ? value.toExponential(2) : value.toPrecision(digits || 4);
};

ST.of = function (value, total) {
  if (value === null || value === undefined) return "–";
  return total ? `${value}/${total}` : String(value);
};

/** A status word as a coloured badge. */
ST.badge = function (status) {
  return ST.el("span", { class: "badge status-" + (status || "unknown"), text: status || "unknown" });
};

ST.progressBar = function (fraction, status) {
  const bar = ST.el("div", { class: "progress status-" + status, title: fraction === null ? "" : Math.round(fraction * 100) + "%" });
  const fill = ST.el("div", { class: "fill" });
  fill.style.width = fraction === null || fraction === undefined ? "0%" : (fraction * 100).toFixed(1) + "%";
  bar.append(fill);
  return bar;
};

/** Server clock minus browser clock, so ages are measured on the server's clock. */
ST.clockOffset = 0;
ST.setServerNow = function (now) {
  if (typeof now === "number") ST.clockOffset = now - Date.now() / 1000;
};
ST.serverNow = function () {
  return Date.now() / 1000 + ST.clockOffset;
};

window.ST = ST;
