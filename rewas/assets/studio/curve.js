// The studio's curve editor (gr.HTML's js_on_load). `element` is the component, `props.value` the view sent by
// rewas/studio.py (duration, t, curve, base, floor, top, edits, source); `trigger('stroke')` sends a drawn stroke
// back as props.value.stroke, a list of [time_s, nats] points. The red line is the video player's position.
const PAD = { l: 46, r: 12, t: 12, b: 26 };
let stroke = null;
let lastTime = -1;

const view = () => props.value || { duration: 0, t: [], curve: [], base: [], floor: -11.5, top: 0 };
const canvas = () => element.querySelector("canvas");
const player = () => document.querySelector("#rewas-video video");

function geometry(c, v) {
  const w = c.clientWidth, h = c.clientHeight;
  const span = Math.max(v.duration, 1e-6), range = Math.max(v.top - v.floor, 1e-6);
  const iw = w - PAD.l - PAD.r, ih = h - PAD.t - PAD.b;
  return {
    w, h,
    x: (t) => PAD.l + (iw * t) / span,
    y: (e) => PAD.t + (ih * (v.top - e)) / range,
    time: (px) => Math.min(span, Math.max(0, ((px - PAD.l) / iw) * span)),
    energy: (py) => Math.min(v.top, Math.max(v.floor, v.top - ((py - PAD.t) / ih) * range)),
  };
}

function line(ctx, g, ts, es) {
  ctx.beginPath();
  ts.forEach((t, i) => (i ? ctx.lineTo(g.x(t), g.y(es[i])) : ctx.moveTo(g.x(t), g.y(es[i]))));
  ctx.stroke();
}

function draw() {
  const c = canvas();
  if (!c) return;
  const v = view(), dpr = window.devicePixelRatio || 1;
  c.width = Math.round(c.clientWidth * dpr);
  c.height = Math.round(c.clientHeight * dpr);
  const ctx = c.getContext("2d"), g = geometry(c, v);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, g.w, g.h);
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#777";
  ctx.strokeStyle = "#ddd";
  ctx.lineWidth = 1;
  if (!v.duration) {
    ctx.fillText("The energy curve appears here once a video is loaded.", PAD.l, g.h / 2);
    return;
  }
  const stepS = v.duration > 60 ? 10 : v.duration > 20 ? 5 : 1;
  for (let s = 0; s <= v.duration + 1e-9; s += stepS) {
    line(ctx, g, [s, s], [v.floor, v.top]);
    ctx.fillText(`${s}s`, g.x(s) - 6, g.h - 8);
  }
  for (let e = Math.ceil(v.floor); e <= v.top; e += 2) {
    line(ctx, g, [0, v.duration], [e, e]);
    ctx.fillText(`${e}`, 8, g.y(e) + 4);
  }
  ctx.setLineDash([4, 3]);
  ctx.strokeStyle = "#999";
  line(ctx, g, v.t, v.base);
  ctx.setLineDash([]);
  if (v.heard && v.heard.length) {
    ctx.strokeStyle = "rgba(22, 163, 74, 0.75)";
    ctx.lineWidth = 1;
    line(ctx, g, v.t, v.heard);
  }
  ctx.strokeStyle = "#2563eb";
  ctx.lineWidth = 2;
  line(ctx, g, v.t, v.curve);
  if (stroke && stroke.length > 1) {
    ctx.strokeStyle = "#f97316";
    line(ctx, g, stroke.map((p) => p[0]), stroke.map((p) => p[1]));
  }
  const video = player();
  if (video && video.currentTime > 0) {
    ctx.strokeStyle = "#dc2626";
    ctx.lineWidth = 1.5;
    line(ctx, g, [video.currentTime, video.currentTime], [v.floor, v.top]);
  }
  const info = element.querySelector(".rewas-curve-info");
  if (info) {
    const edits = (v.edits || []).length ? v.edits.join(" · ") : "no edits";
    info.textContent = `energy (nats, silence ${v.floor.toFixed(1)}) from ${v.source || "?"} · ${edits} · ` +
      "drag across the curve to draw it; dashed: before the edits" +
      (v.heard_of ? `; green: what ${v.heard_of} sounds like` : "");
  }
}

function point(ev) {
  const c = canvas(), r = c.getBoundingClientRect(), g = geometry(c, view());
  return [g.time(ev.clientX - r.left), g.energy(ev.clientY - r.top)];
}

element.addEventListener("pointerdown", (ev) => {
  if (ev.target.tagName !== "CANVAS" || !view().duration) return;
  stroke = [point(ev)];
  ev.target.setPointerCapture(ev.pointerId);
});
element.addEventListener("pointermove", (ev) => {
  if (!stroke) return;
  stroke.push(point(ev));
  draw();
});
element.addEventListener("pointerup", () => {
  if (!stroke) return;
  const done = stroke;
  stroke = null;
  if (done.length > 1) {
    props.value = { ...view(), stroke: done };
    trigger("stroke");
  }
  draw();
});

watch("value", draw);
new ResizeObserver(draw).observe(element);
setInterval(() => {
  const video = player();
  const t = video ? video.currentTime : -1;
  if (t !== lastTime) {
    lastTime = t;
    draw();
  }
}, 60);
draw();
