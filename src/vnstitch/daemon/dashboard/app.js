// vnstitch dashboard: reads the daemon's /api/v1 with the token kept in sessionStorage.
// No framework, no CDN: plain DOM and SVG. Everything from the API is set as text.
"use strict";

const API = "/api/v1";
const POLL_MS = 2000;
const KEEP = 300;                   // polled points kept per stitch
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = { up: "#2a9d8f", requested: "#e9c46a", renegotiating: "#f4a261",
                  down: "#e76f51", failed: "#e76f51" };
const history = new Map();          // stitch_id -> [{t, reserved}]
let timer = null;

function token() { return sessionStorage.getItem("vnstitch-token") || ""; }

async function api(path) {
  const resp = await fetch(API + path, { headers: { Authorization: "Bearer " + token() } });
  if (resp.status === 401) throw new Error("the token was refused (401)");
  if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
  return resp.json();
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                      : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function short(id) { return String(id).slice(0, 8); }

function setStatus(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "error" : "muted";
}

function drawGraph(status, peers, stitches) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const ids = [status.rm_id];
  for (const p of peers) if (!ids.includes(p.id)) ids.push(p.id);
  for (const s of stitches) for (const hop of s.path) if (!ids.includes(hop)) ids.push(hop);
  const pos = new Map();
  const cx = 320, cy = 150, r = ids.length > 1 ? 110 : 0;
  ids.forEach((id, i) => {
    const a = Math.PI + (2 * Math.PI * i) / ids.length;
    pos.set(id, [cx + 2 * r * Math.cos(a) * 0.9, cy + r * Math.sin(a)]);
  });
  const usage = status.link_usage || {};
  for (const p of peers) {
    const [x1, y1] = pos.get(status.rm_id), [x2, y2] = pos.get(p.id);
    svg.append(el("svg:line", { x1, y1, x2, y2, stroke: "#c5ccd3", "stroke-width": 6 }));
    const u = usage[p.id];
    if (u) svg.append(el("svg:text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 8,
      "text-anchor": "middle", "font-size": 11, fill: "#555" },
      `${u.reserved_mbps} / ${u.capacity_mbps} Mbit/s`));
  }
  stitches.forEach((s, i) => {
    if (s.path.length < 2) return;
    const off = (i % 5) * 3 - 6;
    const pts = s.path.map((h) => pos.get(h)).map(([x, y]) => `${x + off},${y + off}`);
    const line = el("svg:polyline", { points: pts.join(" "), fill: "none",
      stroke: COLOURS[s.status] || "#888", "stroke-width": 2.5, "data-stitch": s.stitch_id });
    line.append(el("svg:title", {}, `stitch ${s.stitch_id} (VNID ${s.vnid}): ${s.status}`));
    svg.append(line);
  });
  for (const id of ids) {
    const [x, y] = pos.get(id);
    const here = id === status.rm_id;
    svg.append(el("svg:circle", { cx: x, cy: y, r: 22, fill: here ? "#1d3557" : "#457b9d" }));
    svg.append(el("svg:text", { x, y: y + 4, "text-anchor": "middle", "font-size": 10,
      fill: "#fff" }, short(id)));
    if (here) svg.append(el("svg:text", { x, y: y + 38, "text-anchor": "middle",
      "font-size": 11 }, `segment ${status.segment} (here)`));
  }
}

function fillTable(id, rows, cells) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    for (const c of cells(row)) tr.append(c instanceof Node ? c : el("td", {}, c));
    return tr;
  }));
}

function stateCell(state) {
  const td = el("td");
  td.append(el("span", { class: `pill state-${state}` }, state));
  return td;
}

function drawChart(stitchId, allocations) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  if (!stitchId) {
    svg.append(el("svg:text", { x: 20, y: 110 }, "no stitch yet"));
    return;
  }
  const rows = allocations.filter((d) => d.stitch_id === stitchId && d.now !== undefined);
  // Only a demand decision (it has a quantile) carries the stitch's forecast; the
  // resource rows of the same step carry planned totals instead.
  const band = (d, q) => (d.band && typeof d.band[q] === "number" ? d.band[q] : null);
  const pts = rows.length ? rows.map((d) => ({ t: d.now, measured: d.measured_mbps,
                                               forecast: typeof d.quantile === "number"
                                                 ? d.forecast_mbps : null,
                                               low: band(d, "0.1"), median: band(d, "0.5"),
                                               high: band(d, "0.9"),
                                               reserved: d.reserved_mbps }))
                          : (history.get(stitchId) || []);
  if (!pts.length) return;
  const W = 640, H = 220, L = 48, B = 24;
  const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  const vals = pts.flatMap((p) => [p.measured, p.forecast, p.reserved, p.high])
    .filter((v) => typeof v === "number");
  const top = Math.max(1, ...vals) * 1.15;
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 10);
  const Y = (v) => H - B - (v / top) * (H - B - 10);
  svg.append(el("svg:line", { x1: L, y1: H - B, x2: W - 10, y2: H - B, stroke: "#999" }));
  svg.append(el("svg:line", { x1: L, y1: 10, x2: L, y2: H - B, stroke: "#999" }));
  svg.append(el("svg:text", { x: 4, y: 16, "font-size": 10 }, `${top.toFixed(1)}`));
  svg.append(el("svg:text", { x: 4, y: H - B, "font-size": 10 }, "0 Mbit/s"));
  svg.append(el("svg:text", { x: W - 120, y: H - 6, "font-size": 10 },
                `${(t1 - t0).toFixed(0)} s shown`));
  // The forecast band: from its 10 % to its 90 % quantile, one step ahead.
  const bd = pts.filter((p) => typeof p.low === "number" && typeof p.high === "number");
  if (bd.length) {
    const upper = bd.map((p) => `${X(p.t)},${Y(p.high)}`);
    const lower = bd.slice().reverse().map((p) => `${X(p.t)},${Y(p.low)}`);
    svg.append(el("svg:polygon", { points: `${upper.join(" ")} ${lower.join(" ")}`,
      fill: "#a8dadc", opacity: 0.6, class: "band" }));
  }
  const series = (key, colour, dash) => {
    const p = pts.filter((q) => typeof q[key] === "number");
    if (!p.length) return;
    svg.append(el("svg:polyline", { points: p.map((q) => `${X(q.t)},${Y(q[key])}`).join(" "),
      fill: "none", stroke: colour, "stroke-width": 2, "stroke-dasharray": dash || "",
      class: `series-${key}` }));
  };
  series("median", "#2a9d8f", "2 2");
  series("forecast", "#f4a261");
  series("measured", "#264653");
  series("reserved", "#e63946", "5 3");
}

async function refresh() {
  try {
    const [status, peers, stitches, allocations, decisions] = await Promise.all([
      api("/status"), api("/peers"), api("/stitches"), api("/allocations"),
      api("/decisions")]);
    document.getElementById("rm").textContent =
      `${status.segment} · RM ${short(status.rm_id)}`;
    const now = Date.now() / 1000;
    for (const s of stitches) {
      const h = history.get(s.stitch_id) || [];
      h.push({ t: now, reserved: s.reserved_mbps || s.bandwidth_mbps });
      history.set(s.stitch_id, h.slice(-KEEP));
    }
    drawGraph(status, peers, stitches);
    fillTable("stitches", stitches, (s) => [s.stitch_id, s.vnid, stateCell(s.status),
      s.role || "", s.path.map(short).join(" → "), s.bandwidth_mbps, s.reserved_mbps]);
    const pick = document.getElementById("pick");
    const chosen = pick.value;
    pick.replaceChildren(...stitches.map((s) => el("option", { value: s.stitch_id },
                                                     `${s.stitch_id} (VNID ${s.vnid})`)));
    if (stitches.some((s) => s.stitch_id === chosen)) pick.value = chosen;
    drawChart(pick.value, allocations);
    fillTable("decisions", decisions.slice(-50).reverse(), (d) => [
      new Date(Number(d.now) * 1000).toLocaleTimeString(), d.kind, d.stitch_id, d.action,
      el("td", { class: "reason", title: d.reason }, d.reason)]);
    setStatus(`connected · ${stitches.length} stitches · ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    setStatus(String(err.message || err), true);
  }
}

function start() {
  if (timer !== null) clearInterval(timer);
  if (!token()) { setStatus("enter the API token to connect"); return; }
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem("vnstitch-token", input.value.trim());
  input.value = "";
  start();
});
document.getElementById("pick").addEventListener("change", refresh);
start();
