/* Per-epoch line charts, drawn as SVG here.
 *
 * Why not a charting library: the view needs a few small line charts (one value per
 * epoch, at most a few thousand points), which take ~150 lines of SVG; a library would
 * be a vendored file with its own licence and updates to track, for features unused.
 */
"use strict";

const Chart = {};

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = { train: "#1f77b4", valid: "#ff7f0e", val: "#ff7f0e", eval: "#ff7f0e", test: "#2ca02c" };
const OTHERS = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** About five round tick values covering [low, high]. */
Chart.ticks = function (low, high, count) {
  if (low === high) { low -= 1; high += 1; }
  const raw = (high - low) / (count || 5);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
};

Chart.colour = function (name, index) {
  const prefix = name.split("_")[0];
  return COLOURS[prefix] && name.includes("_") ? COLOURS[prefix] : OTHERS[index % OTHERS.length];
};

function label(v) {
  if (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** A chart of ``names`` (series of ``table``) against its epochs, as an SVG element. */
Chart.line = function (title, names, table) {
  const W = 360, H = 220, L = 48, R = 12, T = 40, B = 30;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  svg.append(svgEl("text", { x: L, y: 14, class: "chart-title" }, title));
  const epochs = table.epochs;
  const values = names.flatMap((n) => table.series[n].filter((v) => v !== null));
  if (!values.length || !epochs.length) return svg;
  let [y0, y1] = [Math.min(...values), Math.max(...values)];
  const pad = (y1 - y0) * 0.05 || Math.abs(y1) * 0.05 || 1;
  [y0, y1] = [y0 - pad, y1 + pad];
  const [x0, x1] = [Math.min(...epochs), Math.max(...epochs) === Math.min(...epochs) ? Math.min(...epochs) + 1 : Math.max(...epochs)];
  const x = (e) => L + ((e - x0) / (x1 - x0)) * (W - L - R);
  const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  for (const t of Chart.ticks(y0, y1, 4)) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(t), y2: y(t), class: "grid" }));
    svg.append(svgEl("text", { x: L - 4, y: y(t) + 3, class: "tick", "text-anchor": "end" }, label(t)));
  }
  for (const t of Chart.ticks(x0, x1, 5).filter((t) => Number.isInteger(t))) {
    svg.append(svgEl("text", { x: x(t), y: H - B + 14, class: "tick", "text-anchor": "middle" }, String(t)));
  }
  svg.append(svgEl("text", { x: W - R, y: H - 4, class: "tick", "text-anchor": "end" }, "epoch"));
  svg.append(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.append(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  names.forEach((name, i) => drawSeries(svg, name, Chart.colour(name, i), epochs, table.series[name], x, y, i));
  return svg;
};

function drawSeries(svg, name, colour, epochs, series, x, y, index) {
  let path = "";
  let pen = false;
  epochs.forEach((e, j) => {
    const v = series[j];
    if (v === null || v === undefined) { pen = false; return; }
    path += `${pen ? "L" : "M"}${x(e).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  svg.append(svgEl("path", { d: path, class: "series", stroke: colour, "data-series": name }));
  if (epochs.length <= 60) {
    epochs.forEach((e, j) => {
      const v = series[j];
      if (v === null || v === undefined) return;
      const dot = svgEl("circle", { cx: x(e), cy: y(v), r: 2.4, fill: colour });
      dot.append(svgEl("title", {}, `${name} · epoch ${e}: ${v}`));
      svg.append(dot);
    });
  }
  const lx = 48 + index * 130;
  svg.append(svgEl("rect", { x: lx, y: 24, width: 10, height: 3, fill: colour }));
  svg.append(svgEl("text", { x: lx + 14, y: 29, class: "legend-text" }, name));
}

window.Chart = Chart;
