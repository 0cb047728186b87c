// A small SVG line chart: one series of {label, value} points, labelled axes, values as text.
// Everything is built with createElementNS and textContent; nothing is parsed as markup.
"use strict";

window.KapokChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const H = 240, MIN_W = 280, PAD = { left: 48, right: 24, top: 24, bottom: 32 };

  function node(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // The smallest 1, 2 or 5 × 10^n step that splits [0, max] into at most `ticks` parts.
  function niceStep(max, ticks) {
    const raw = Math.max(max, 1) / ticks;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 5, 10]) if (m * magnitude >= raw) return Math.max(1, m * magnitude);
    return 10 * magnitude;
  }

  // points: [{label, value, key}]; replaces the content of `container` with a fresh chart,
  // drawn for the container's width (so it fills its card and its text keeps its size:
  // redraw when the width changes). Numbers on the chart are compact ("12K", "1.2万");
  // each point's tooltip has the exact one.
  function line(container, points, { title = "", locale = "en" } = {}) {
    const W = Math.max(MIN_W, Math.floor(container.clientWidth));
    const short = new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 });
    const step = niceStep(Math.max(...points.map((p) => p.value), 0), 4);
    const top = step * Math.max(1, Math.ceil(Math.max(...points.map((p) => p.value), 0) / step));
    const innerW = W - PAD.left - PAD.right, innerH = H - PAD.top - PAD.bottom;
    const x = (i) => PAD.left + (points.length > 1 ? (i * innerW) / (points.length - 1) : innerW / 2);
    const y = (v) => PAD.top + innerH - (v / top) * innerH;

    const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img" });
    svg.append(node("title", {}, title));
    for (let v = 0; v <= top; v += step) {
      svg.append(node("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "gridline" }));
      svg.append(node("text", { x: PAD.left - 8, y: y(v) + 4, class: "axis", "text-anchor": "end" },
        short.format(v)));
    }
    const coords = points.map((p, i) => `${x(i)},${y(p.value)}`);
    const bottom = y(0);
    svg.append(node("polygon", {
      points: `${x(0)},${bottom} ${coords.join(" ")} ${x(points.length - 1)},${bottom}`, class: "area",
    }));
    svg.append(node("polyline", { points: coords.join(" "), class: "line" }));
    points.forEach((p, i) => {
      const dot = node("circle", { cx: x(i), cy: y(p.value), r: 4, class: "dot",
        "data-day": p.key, "data-count": p.value });
      dot.append(node("title", {}, `${p.label}: ${p.value.toLocaleString(locale)}`));
      svg.append(dot);
      svg.append(node("text", { x: x(i), y: y(p.value) - 10, class: "value", "text-anchor": "middle" },
        short.format(p.value)));
      svg.append(node("text", { x: x(i), y: H - 10, class: "axis day", "text-anchor": "middle" }, p.label));
    });
    container.replaceChildren(svg);
    thinDays(svg, points.length > 1 ? innerW / (points.length - 1) : innerW);
  }

  // On a narrow card the day labels ("11月26日") would run into each other: keep every k-th
  // one, counted back from the last (today), so those shown have room; each dot's tooltip
  // still names its day.
  function thinDays(svg, spacing) {
    const days = [...svg.querySelectorAll("text.day")];
    const widest = Math.max(0, ...days.map((t) => t.getComputedTextLength()));
    const every = Math.max(1, Math.ceil((widest + 6) / spacing));
    days.forEach((t, i) => {
      if ((days.length - 1 - i) % every !== 0) t.setAttribute("visibility", "hidden");
    });
  }

  return { line, niceStep };
})();
