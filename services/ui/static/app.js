// Draws every chart on the page from the JSON next to it, and keeps live numbers fresh.
// Metric charts carry each series with both x axes; the controls switch the axis and apply an
// exponential moving average, as experiment trackers do.
"use strict";

function smooth(values, weight) {
  if (!weight) return values;
  const out = [];
  let last = null;
  for (const v of values) {
    if (v === null) { out.push(null); continue; }
    last = last === null ? v : last * weight + (1 - weight) * v;
    out.push(last);
  }
  return out;
}

// A time as a UTC wall-clock string, which Plotly draws as it is: a Date it would draw in the
// browser's time zone, while the page's tables (and the other charts' times) are in UTC.
function utc(ms) {
  return new Date(ms).toISOString().slice(0, 23).replace("T", " ");
}

function metricTraces(spec, axis, weight) {
  return spec.series.map((s) => ({
    type: "scatter",
    mode: s.y.length > 1 ? "lines" : "markers",
    name: s.name,
    x: axis === "time" ? s.time.map(utc) : s.step,
    y: smooth(s.y, weight),
  }));
}

function draw(el) {
  const data = document.getElementById(el.dataset.chart);
  if (!data || typeof Plotly === "undefined") return;
  const spec = JSON.parse(data.textContent);
  const config = { responsive: true, displaylogo: false };
  if (spec.kind === "metrics") {
    const controls = document.querySelector(`.chart-controls[data-for="${el.id}"]`);
    const redraw = () => {
      const axis = controls ? controls.querySelector(".x-axis").value : "step";
      const weight = controls ? Number(controls.querySelector(".smoothing").value) : 0;
      const layout = Object.assign({}, spec.layout, { title: { text: spec.title, font: { size: 14 } } });
      if (axis === "time") layout.xaxis = Object.assign({}, spec.layout.xaxis, { title: { text: "time (UTC)" } });
      Plotly.react(el, metricTraces(spec, axis, weight), layout, config);
    };
    if (controls) controls.addEventListener("input", redraw);
    redraw();
  } else {
    Plotly.react(el, spec.data, spec.layout, config);
  }
  el.dataset.drawn = "true";
}

function drawAll(root) {
  root.querySelectorAll("div.chart[data-chart]").forEach(draw);
}

function pollLive() {
  const live = document.querySelector("[data-stats]");
  if (!live) return;
  const refresh = async () => {
    try {
      const response = await fetch(live.dataset.stats, { credentials: "same-origin" });
      if (!response.ok) return;
      const stats = await response.json();
      live.querySelectorAll("[data-live]").forEach((el) => {
        const value = stats[el.dataset.live];
        el.textContent = value === null || value === undefined ? "—" : String(value);
      });
      const charts = document.querySelectorAll("[data-live-charts] div.chart");
      (stats.charts || []).forEach((spec, i) => {
        if (charts[i] && typeof Plotly !== "undefined") Plotly.react(charts[i], spec.data, spec.layout);
      });
      Object.entries(stats.states || {}).forEach(([name, state]) => {
        const el = document.querySelector(`[data-served="${CSS.escape(name)}"]`);
        if (el) el.textContent = state;
      });
      live.dataset.updated = new Date().toISOString();
    } catch (e) {
      // The next tick tries again; the page keeps what it shows.
    }
  };
  setInterval(refresh, 5000);
}

window.addEventListener("DOMContentLoaded", () => {
  drawAll(document);
  pollLive();
});
