// ComfyUI-LiWi layer panel: after LiWi Decompose, Recompose Layers or Layers From Images runs,
// the node shows its layers (composite, one row per layer: eye, thumbnail, name, opacity).
// Dragging an object moves it and its shadow in the browser and writes the move into the
// LiWi Recompose Layers node's widgets (layer_index / dx / dy, or a more_edits line), so the
// graph stays the single source of truth: queueing again gives the image shown.
//
// Plain JavaScript against the frontend's extension API (frontend 1.27 and 1.47), no build step.
// The layers come from the node's `ui` output (key "liwi_layers", written by nodes/panel.py) as
// PNG files in ComfyUI's temp folder, fetched through ComfyUI's own /view route.
// The panel is an addition: if this file fails to load, every node still works.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PANEL_NODES = new Set(["LiWiDecompose", "LiWiRecomposeLayers", "LiWiLayersFromImages"]);
const RECOMPOSE = "LiWiRecomposeLayers";
const UI_KEY = "liwi_layers";
const DATA_VERSION = 1;
const WIDGET_NAME = "liwi_layer_panel";
const MAX_WORK = 1024; // the composite is computed at most this many pixels on its long side
const THUMB = 44;

// ---------------------------------------------------------------------------------------------
// styles

const CSS = `
.liwi-panel { box-sizing: border-box; width: 100%; padding: 4px; font: 12px sans-serif; color: #ddd;
  background: #222; border-radius: 6px; display: flex; flex-direction: column; gap: 4px; overflow: hidden; }
.liwi-head { display: flex; justify-content: space-between; color: #aaa; }
.liwi-checker { background-color: #eee;
  background-image: linear-gradient(45deg, #bbb 25%, transparent 25%, transparent 75%, #bbb 75%),
                    linear-gradient(45deg, #bbb 25%, transparent 25%, transparent 75%, #bbb 75%);
  background-size: 12px 12px; background-position: 0 0, 6px 6px; }
.liwi-view { position: relative; line-height: 0; }
.liwi-composite { width: 100%; height: auto; display: block; cursor: grab; touch-action: none; }
.liwi-composite.liwi-dragging { cursor: grabbing; }
.liwi-list { display: flex; flex-direction: column; gap: 2px; overflow-y: auto; }
.liwi-row { display: flex; align-items: center; gap: 6px; padding: 2px 4px; background: #2c2c2c; border-radius: 4px; }
.liwi-row.liwi-shadow { margin-left: 14px; }
.liwi-row.liwi-off .liwi-thumb, .liwi-row.liwi-off .liwi-name { opacity: 0.35; }
.liwi-eye { width: 22px; height: 22px; padding: 0; border: 0; background: none; cursor: pointer; color: #ddd; }
.liwi-row.liwi-off .liwi-eye { color: #666; }
.liwi-thumb { border: 1px solid #555; flex: none; }
.liwi-name { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.liwi-kind { color: #888; margin-left: 4px; }
.liwi-opacity { width: 70px; flex: none; }
.liwi-status { color: #999; min-height: 14px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
`;

function addStyle() {
  if (document.getElementById("liwi-layer-panel-style")) return;
  const style = document.createElement("style");
  style.id = "liwi-layer-panel-style";
  style.textContent = CSS;
  document.head.appendChild(style);
}

const EYE_ON = `<svg viewBox="0 0 24 24" width="18" height="18" fill="none" stroke="currentColor" stroke-width="2">
<path d="M1 12s4-7 11-7 11 7 11 7-4 7-11 7S1 12 1 12z"/><circle cx="12" cy="12" r="3"/></svg>`;
const EYE_OFF = `<svg viewBox="0 0 24 24" width="18" height="18" fill="none" stroke="currentColor" stroke-width="2">
<path d="M1 12s4-7 11-7 11 7 11 7-4 7-11 7S1 12 1 12z"/><line x1="3" y1="3" x2="21" y2="21"/></svg>`;

// ---------------------------------------------------------------------------------------------
// the graph: Recompose's edit widgets

function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

function setWidget(node, name, value) {
  const w = widget(node, name);
  if (!w) return;
  w.value = value;
  try {
    w.callback?.(w.value, app.canvas, node);
  } catch (e) {
    console.warn("LiWi layer panel: widget callback", name, e);
  }
}

function getLink(graph, id) {
  const links = graph?.links;
  if (!links) return null;
  return typeof links.get === "function" ? links.get(id) : links[id];
}

function nodeClass(node) {
  return node?.comfyClass ?? node?.type;
}

/** The LiWi Recompose Layers node the panel's moves go to: the node itself, or the first
 * Recompose fed by its layer stack (output 0). */
function editTarget(node) {
  if (nodeClass(node) === RECOMPOSE) return node;
  const graph = node.graph ?? app.graph;
  for (const id of node.outputs?.[0]?.links ?? []) {
    const link = getLink(graph, id);
    const target = link && graph.getNodeById(link.target_id);
    if (nodeClass(target) === RECOMPOSE) return target;
  }
  return null;
}

/** more_edits lines, as parse_edit reads them: "INDEX:dx=..,dy=..,scale=..,opacity=..,visible=0". */
function parseEdits(text) {
  const lines = [];
  for (const raw of String(text ?? "").split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const colon = line.indexOf(":");
    const index = Number(line.slice(0, colon));
    if (colon < 0 || !Number.isInteger(index)) {
      lines.push({ raw: line });
      continue;
    }
    const fields = [];
    for (const item of line.slice(colon + 1).split(",")) {
      if (!item.trim()) continue;
      const eq = item.indexOf("=");
      fields.push([item.slice(0, eq < 0 ? item.length : eq).trim(), eq < 0 ? "" : item.slice(eq + 1).trim()]);
    }
    lines.push({ index, fields });
  }
  return lines;
}

function formatEdits(lines) {
  return lines.map((l) => (l.raw !== undefined ? l.raw : `${l.index}:` + l.fields.map(([k, v]) => `${k}=${v}`).join(","))).join("\n");
}

function field(line, key) {
  const f = line.fields.find(([k]) => k === key);
  return f ? Number(f[1]) || 0 : 0;
}

function setField(line, key, value) {
  const f = line.fields.find(([k]) => k === key);
  if (f) f[1] = String(value);
  else line.fields.push([key, String(value)]);
}

/** The (dx, dy) the Recompose node gives each layer index now. */
function currentOffsets(rec) {
  const out = new Map();
  if (!rec) return out;
  for (const line of parseEdits(widget(rec, "more_edits")?.value)) {
    if (line.fields) out.set(line.index, { dx: field(line, "dx"), dy: field(line, "dy") });
  }
  const li = widget(rec, "layer_index")?.value;
  if (Number.isInteger(li) && li >= 0) {
    out.set(li, { dx: Number(widget(rec, "dx")?.value) || 0, dy: Number(widget(rec, "dy")?.value) || 0 });
  }
  return out;
}

/** Add (ddx, ddy) to layer ``index``'s move in the Recompose node: in its widgets when they edit
 * that layer (or none), else in its more_edits line (added when missing). */
function writeMove(rec, index, ddx, ddy) {
  const li = widget(rec, "layer_index")?.value;
  if (li === index) {
    setWidget(rec, "dx", (Number(widget(rec, "dx").value) || 0) + ddx);
    setWidget(rec, "dy", (Number(widget(rec, "dy").value) || 0) + ddy);
  } else {
    const lines = parseEdits(widget(rec, "more_edits")?.value);
    const line = lines.find((l) => l.index === index);
    if (line) {
      setField(line, "dx", field(line, "dx") + ddx);
      setField(line, "dy", field(line, "dy") + ddy);
      setWidget(rec, "more_edits", formatEdits(lines));
    } else if (!(li >= 0)) {
      // the widgets edit no layer: make them edit this one (their old values were inactive)
      setWidget(rec, "layer_index", index);
      setWidget(rec, "visible", true);
      setWidget(rec, "dx", ddx);
      setWidget(rec, "dy", ddy);
      setWidget(rec, "scale", 1.0);
      setWidget(rec, "opacity", 1.0);
    } else {
      lines.push({ index, fields: [["dx", String(ddx)], ["dy", String(ddy)]] });
      setWidget(rec, "more_edits", formatEdits(lines));
    }
  }
  rec.setDirtyCanvas?.(true, true);
  app.graph?.setDirtyCanvas?.(true, true);
}

// ---------------------------------------------------------------------------------------------
// loading the layers

function viewURL(file) {
  const params = new URLSearchParams({ filename: file.filename, subfolder: file.subfolder ?? "", type: file.type ?? "temp" });
  return api.apiURL(`/view?${params}`);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

/** A layer's pixels at work resolution: the rectangle it covers (lx, ly, lw, lh) and its RGBA. */
function rasterise(img, meta, f) {
  const x0 = Math.floor(meta.x * f), y0 = Math.floor(meta.y * f);
  const lw = Math.max(1, Math.ceil((meta.x + meta.w) * f) - x0), lh = Math.max(1, Math.ceil((meta.y + meta.h) * f) - y0);
  const c = document.createElement("canvas");
  c.width = lw;
  c.height = lh;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = f !== 1;
  ctx.drawImage(img, meta.x * f - x0, meta.y * f - y0, meta.w * f, meta.h * f);
  return { lx: x0, ly: y0, lw, lh, data: ctx.getImageData(0, 0, lw, lh).data };
}

// ---------------------------------------------------------------------------------------------
// the composite rule (liwi_core/compositing.py): C_k = a_k F_k + (1 - a_k) C_(k-1) s_k,
// accumulated premultiplied so a hidden background shows the checkerboard

function composite(state) {
  const { ww: W, wh: H } = state;
  const n = W * H;
  const rgb = new Float32Array(n * 3);
  const A = new Float32Array(n);
  for (const layer of state.layers) {
    if (!layer.visible || layer.opacity <= 0) continue;
    const o = layer.opacity;
    const off = layer.kind === "background" ? { dx: 0, dy: 0 } : state.offsets.get(layer.index) ?? { dx: 0, dy: 0 };
    const ox = layer.lx + Math.round(off.dx * state.f), oy = layer.ly + Math.round(off.dy * state.f);
    const d = layer.data;
    for (let y = 0; y < layer.lh; y++) {
      const ty = y + oy;
      if (ty < 0 || ty >= H) continue;
      for (let x = 0; x < layer.lw; x++) {
        const tx = x + ox;
        if (tx < 0 || tx >= W) continue;
        const s = (y * layer.lw + x) * 4, t = ty * W + tx, t3 = t * 3;
        if (layer.kind === "shadow") {
          if (d[s] === d[s + 1] && d[s] === d[s + 2]) {
            const m = 1 - o * (1 - d[s] / 255);
            rgb[t3] *= m; rgb[t3 + 1] *= m; rgb[t3 + 2] *= m;
          } else {
            rgb[t3] *= 1 - o * (1 - d[s] / 255);
            rgb[t3 + 1] *= 1 - o * (1 - d[s + 1] / 255);
            rgb[t3 + 2] *= 1 - o * (1 - d[s + 2] / 255);
          }
        } else {
          const a = (d[s + 3] / 255) * o;
          if (a <= 0) continue;
          const k = 1 - a;
          rgb[t3] = a * d[s] / 255 + k * rgb[t3];
          rgb[t3 + 1] = a * d[s + 1] / 255 + k * rgb[t3 + 1];
          rgb[t3 + 2] = a * d[s + 2] / 255 + k * rgb[t3 + 2];
          A[t] = a + k * A[t];
        }
      }
    }
  }
  const out = new ImageData(W, H);
  const px = out.data;
  for (let t = 0; t < n; t++) {
    const a = A[t];
    if (a <= 0) continue;
    const inv = a >= 1 ? 255 : 255 / a;
    px[t * 4] = rgb[t * 3] * inv;
    px[t * 4 + 1] = rgb[t * 3 + 1] * inv;
    px[t * 4 + 2] = rgb[t * 3 + 2] * inv;
    px[t * 4 + 3] = a * 255;
  }
  return out;
}

function render(state) {
  state.image = composite(state);
  state.canvas.getContext("2d").putImageData(state.image, 0, 0);
}

/** The front-most visible object under work pixel (x, y), or null. */
function objectAt(state, x, y) {
  for (let i = state.layers.length - 1; i >= 0; i--) {
    const layer = state.layers[i];
    if (layer.kind !== "object" || !layer.visible) continue;
    const off = state.offsets.get(layer.index) ?? { dx: 0, dy: 0 };
    const lx = Math.floor(x - layer.lx - Math.round(off.dx * state.f));
    const ly = Math.floor(y - layer.ly - Math.round(off.dy * state.f));
    if (lx < 0 || ly < 0 || lx >= layer.lw || ly >= layer.lh) continue;
    if (layer.data[(ly * layer.lw + lx) * 4 + 3] > 25) return layer;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// the panel

function thumbnail(state, layer) {
  const c = document.createElement("canvas");
  const s = THUMB / Math.max(state.width, state.height);
  c.width = Math.max(1, Math.round(state.width * s));
  c.height = Math.max(1, Math.round(state.height * s));
  c.className = "liwi-thumb liwi-checker";
  const src = document.createElement("canvas");
  src.width = layer.lw;
  src.height = layer.lh;
  const img = new ImageData(layer.lw, layer.lh);
  img.data.set(layer.data);
  if (layer.kind === "shadow") {
    // shown as the darkening it adds (twice as strong, to be seen at this size): black, as opaque as the shadow is dark
    for (let i = 0; i < img.data.length; i += 4) {
      const dark = 2 * (255 - (img.data[i] + img.data[i + 1] + img.data[i + 2]) / 3);
      img.data[i] = img.data[i + 1] = img.data[i + 2] = 0;
      img.data[i + 3] = dark;
    }
  }
  src.getContext("2d").putImageData(img, 0, 0);
  const g = s / state.f;
  c.getContext("2d").drawImage(src, layer.lx * g, layer.ly * g, layer.lw * g, layer.lh * g);
  return c;
}

function row(state, layer) {
  const el = document.createElement("div");
  el.className = `liwi-row liwi-${layer.kind}`;
  el.dataset.kind = layer.kind;
  if (layer.index !== null && layer.index !== undefined) el.dataset.index = String(layer.index);
  const eye = document.createElement("button");
  eye.className = "liwi-eye";
  eye.title = "Show or hide this layer in the panel (view only: Recompose's 'visible' hides a layer in the graph)";
  const sync = () => {
    eye.innerHTML = layer.visible ? EYE_ON : EYE_OFF;
    el.classList.toggle("liwi-off", !layer.visible);
  };
  eye.addEventListener("click", (e) => {
    e.stopPropagation();
    layer.visible = !layer.visible;
    sync();
    render(state);
  });
  sync();
  const name = document.createElement("span");
  name.className = "liwi-name";
  name.textContent = layer.name;
  const kind = document.createElement("span");
  kind.className = "liwi-kind";
  kind.textContent = layer.kind === "object" ? `#${layer.index}` : layer.kind === "shadow" ? `of #${layer.owner}` : "";
  name.appendChild(kind);
  name.title = layer.kind === "background" ? "background" : `${layer.name}: ${layer.kind} ${kind.textContent}`;
  const opacity = document.createElement("input");
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "100";
  opacity.value = "100";
  opacity.className = "liwi-opacity";
  opacity.title = "Opacity in the panel (view only)";
  opacity.addEventListener("input", () => {
    layer.opacity = Number(opacity.value) / 100;
    render(state);
  });
  for (const ev of ["pointerdown", "mousedown", "wheel"]) opacity.addEventListener(ev, (e) => e.stopPropagation());
  el.append(eye, thumbnail(state, layer), name, opacity);
  return el;
}

function setStatus(state, text) {
  state.status.textContent = text;
  state.status.title = text;
}

function targetText(state) {
  const rec = editTarget(state.node);
  if (!rec) return "moves stay in the panel: connect a LiWi Recompose Layers to keep them";
  return rec === state.node ? "drag an object to move it; queue to apply" : `drag an object: moves go to Recompose #${rec.id}`;
}

/** Every panel whose moves go to ``rec`` shows the moves it makes: redraw them after ``from`` changed one. */
function syncPanels(rec, from) {
  for (const el of document.querySelectorAll(".liwi-panel")) {
    const other = el.liwi;
    if (!other || other === from || !other.canvas || editTarget(other.node) !== rec) continue;
    other.offsets = currentOffsets(rec);
    render(other);
  }
}

function attachDrag(state) {
  const canvas = state.canvas;
  let drag = null;
  const toWork = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * state.ww) / r.width, ((e.clientY - r.top) * state.wh) / r.height, r];
  };
  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    const [x, y, r] = toWork(e);
    const layer = objectAt(state, x, y);
    if (!layer) return;
    e.preventDefault();
    e.stopPropagation();
    canvas.setPointerCapture?.(e.pointerId);
    canvas.classList.add("liwi-dragging");
    // image pixels per screen pixel, fixed for the drag (the canvas may be zoomed)
    drag = { layer, x0: e.clientX, y0: e.clientY, sx: state.width / r.width, sy: state.height / r.height, ax: 0, ay: 0 };
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    e.preventDefault();
    e.stopPropagation();
    const tx = Math.round((e.clientX - drag.x0) * drag.sx), ty = Math.round((e.clientY - drag.y0) * drag.sy);
    const ddx = tx - drag.ax, ddy = ty - drag.ay;
    if (!ddx && !ddy) return;
    drag.ax = tx;
    drag.ay = ty;
    const index = drag.layer.index;
    const off = state.offsets.get(index) ?? { dx: 0, dy: 0 };
    state.offsets.set(index, { dx: off.dx + ddx, dy: off.dy + ddy });
    const rec = editTarget(state.node);
    if (rec) {
      writeMove(rec, index, ddx, ddy);
      syncPanels(rec, state);
    }
    state.moved = true;
    render(state);
    setStatus(state, `${drag.layer.name}: moved ${tx >= 0 ? "+" : ""}${tx}, ${ty >= 0 ? "+" : ""}${ty} px` +
      (rec ? ` (Recompose #${rec.id}); queue to apply` : " (panel only)"));
  });
  const end = (e) => {
    if (!drag) return;
    e.stopPropagation();
    canvas.releasePointerCapture?.(e.pointerId);
    canvas.classList.remove("liwi-dragging");
    drag = null;
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  for (const ev of ["mousedown", "wheel"]) canvas.addEventListener(ev, (e) => { if (drag) e.stopPropagation(); });
}

function panelHeight(state) {
  const w = Math.max(200, (state.node.size?.[0] ?? 360) - 20);
  const view = state.width ? (w * state.height) / state.width : 120;
  return Math.round(30 + view + state.layers.length * 36 + 24);
}

function ensureWidget(node) {
  let w = widget(node, WIDGET_NAME);
  if (w) return w;
  const el = document.createElement("div");
  el.className = "liwi-panel";
  w = node.addDOMWidget(WIDGET_NAME, "liwi_layers", el, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => (el.liwi ? panelHeight(el.liwi) : 60),
    getHeight: () => (el.liwi ? panelHeight(el.liwi) : 60),
  });
  w.serialize = false;
  if (w.options) w.options.serialize = false;
  return w;
}

async function showPanel(node, data) {
  addStyle();
  const w = ensureWidget(node);
  const el = w.element;
  const f = Math.min(1, MAX_WORK / Math.max(data.width, data.height));
  const state = {
    node, data, el, f, width: data.width, height: data.height,
    ww: Math.max(1, Math.round(data.width * f)), wh: Math.max(1, Math.round(data.height * f)),
    layers: [], offsets: new Map(), moved: false, token: data.token,
  };
  el.liwi = state;
  el.dataset.nodeId = String(node.id);
  el.dataset.state = "loading";
  el.dataset.token = data.token;
  el.replaceChildren();
  const head = document.createElement("div");
  head.className = "liwi-head";
  const objects = data.layers.filter((l) => l.kind === "object").length;
  head.textContent = `LiWi layers: background, ${objects} object(s), ${objects} shadow(s)`;
  if (data.batch > 1) head.textContent += ` (image 1 of ${data.batch})`;
  el.appendChild(head);
  state.status = document.createElement("div");
  state.status.className = "liwi-status";
  setStatus(state, "loading layers...");
  try {
    const images = await Promise.all(data.layers.map((l) => loadImage(viewURL(l))));
    if (el.liwi !== state) return; // a newer run replaced this one while loading
    state.layers = data.layers.map((meta, i) => ({ ...meta, ...rasterise(images[i], meta, f), visible: true, opacity: 1 }));
  } catch (e) {
    setStatus(state, `could not load the layers: ${e.message}`);
    el.appendChild(state.status);
    el.dataset.state = "error";
    return;
  }
  // Recompose sends the moves it made (its other edits are in the files); Decompose and Layers From
  // Images show their stack at the moves the Recompose they feed makes now
  if (Array.isArray(data.offsets) && nodeClass(node) === RECOMPOSE) {
    state.offsets = new Map(data.offsets.map(([i, dx, dy]) => [i, { dx, dy }]));
  } else {
    state.offsets = currentOffsets(editTarget(node));
  }
  const view = document.createElement("div");
  view.className = "liwi-view liwi-checker";
  state.canvas = document.createElement("canvas");
  state.canvas.className = "liwi-composite";
  state.canvas.width = state.ww;
  state.canvas.height = state.wh;
  view.appendChild(state.canvas);
  const list = document.createElement("div");
  list.className = "liwi-list";
  // front-most first, each shadow under its object, the background last
  for (const layer of [...state.layers].reverse()) list.appendChild(row(state, layer));
  el.append(view, list, state.status);
  attachDrag(state);
  render(state);
  setStatus(state, targetText(state));
  const h = panelHeight(state);
  el.style.height = `${h}px`;
  const size = node.computeSize?.() ?? node.size;
  node.setSize?.([Math.max(node.size?.[0] ?? 0, 380), Math.max(node.size?.[1] ?? 0, size[1])]);
  node.setDirtyCanvas?.(true, true);
  el.dataset.state = "ready";
}

app.registerExtension({
  name: "LiWi.LayerPanel",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!PANEL_NODES.has(nodeData?.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      const data = output?.[UI_KEY]?.[0];
      if (data && data.version === DATA_VERSION) {
        showPanel(this, data).catch((e) => console.error("LiWi layer panel:", e));
      }
      return result;
    };
  },
});
