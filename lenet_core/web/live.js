// live.js -- the page "Draw a digit": a drawing pad, LeNet-5 running in the browser, and
// plots of everything it computes. It follows digit.js and lenet.js in one module
// (lenet_core/live.py joins the three files) and uses their functions directly.
//
// anywidget calls render({model, el}) in Jupyter (with a kernel) and in the book's static
// pages (the ipywidgets embed manager, no kernel). The widget model holds:
//   models   {key: JSON text of a web export}  the networks to choose from
//   samples  {images: base64 of N x 28 x 28 gray levels, labels: [...], names: [...]}
//   variant  the key of the network shown
//   digit    (written here) the last 32x32 input, for Python to read in a live kernel
//   prediction (written here) the class the network chose, -1 before any digit

const PAD = 280;                 // the drawing pad's own pixels (CSS scales it)
const STROKE = 24;               // pen width on the pad: ~2.5 px once a full-size digit is scaled to 20 px
const INK = "#111", PAPER = "#fff", TEXT = "#1f2328", MUTED = "#57606a", ACCENT = "#1f6feb";
const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const LEARNING_RATES = [0.001, 0.01, 0.05, 0.1, 0.5];

// ---------------------------------------------------------------------------
// Color scales: 256-entry lookup tables interpolated between a few colors.
// ---------------------------------------------------------------------------
function lut(stops) {
  const table = new Uint8ClampedArray(256 * 3);
  for (let k = 0; k < 256; k++) {
    const t = (k / 255) * (stops.length - 1), i = Math.min(Math.floor(t), stops.length - 2), f = t - i;
    for (let c = 0; c < 3; c++) table[3 * k + c] = stops[i][c] + f * (stops[i + 1][c] - stops[i][c]);
  }
  return table;
}
const DIVERGING = lut([[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]]); // blue-white-red
const HEAT = lut([[255, 255, 255], [253, 204, 138], [252, 141, 89], [215, 48, 31], [127, 0, 0]]);   // white-orange-red
const GRAY_R = lut([[255, 255, 255], [0, 0, 0]]);                                                   // white-black
const REDS = lut([[247, 247, 247], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]]);   // white-red, for ReLU

function colorIndex(v, lo, hi) {
  const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

// ---------------------------------------------------------------------------
// Small DOM and canvas helpers
// ---------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}

let uid = 0;
function nextId(stem) { uid += 1; return `lenet-live-${stem}-${uid}`; }

// A figure: a canvas of w x h CSS pixels (sharp on high-density screens) whose drawing
// shrinks with the page on a narrow screen. role=img + aria-label describe what it shows.
function figure(parent, w, ht, label) {
  const canvas = sharpCanvas(w, ht);
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", label);
  const fig = document.createElement("figure");
  fig.className = "ll-figure";
  fig.style.maxWidth = `${w}px`;
  fig.append(canvas);
  parent.append(fig);
  const ctx = canvas.getContext("2d");
  return { fig, canvas, ctx, w, h: ht };
}
function sharpCanvas(w, ht) {
  const canvas = document.createElement("canvas");
  const dpr = Math.min(window.devicePixelRatio || 1, 2);
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(ht * dpr);
  canvas.dataset.dpr = String(dpr);
  return canvas;
}
function begin(f) {                      // clear a figure and set its scale
  const dpr = Number(f.canvas.dataset.dpr);
  const ctx = f.ctx;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, f.w, f.h);
  ctx.textBaseline = "alphabetic";
  return ctx;
}
function text(ctx, s, x, y, { size = 12, color = TEXT, align = "left", bold = false, baseline = "alphabetic" } = {}) {
  const font = `${bold ? "600 " : ""}${size}px ${FONT}`;
  if (ctx.llFont !== font) { ctx.font = font; ctx.llFont = font; }   // setting a font is slow
  ctx.fillStyle = color;
  ctx.textAlign = align;
  ctx.textBaseline = baseline;
  ctx.fillText(s, x, y);
}
function title(ctx, s, f) { text(ctx, s, 8, 18, { size: 13, bold: true }); }

// Paint maps (each h x w, values in data at offset k*h*w) into a grid, scaled by `cell`.
const scratch = document.createElement("canvas");
function paintMaps(ctx, data, { count, mh, mw, cols, x0, y0, cell, gap, table, lo, hi, labels }) {
  const rows = Math.ceil(count / cols);
  scratch.width = cols * (mw + 1);
  scratch.height = rows * (mh + 1);
  const sctx = scratch.getContext("2d");
  const img = sctx.createImageData(scratch.width, scratch.height);
  for (let m = 0; m < count; m++) {
    const gx = (m % cols) * (mw + 1), gy = Math.floor(m / cols) * (mh + 1);
    for (let i = 0; i < mh; i++)
      for (let j = 0; j < mw; j++) {
        const c = colorIndex(data[m * mh * mw + i * mw + j], lo, hi), at = 4 * ((gy + i) * scratch.width + gx + j);
        img.data[at] = table[3 * c]; img.data[at + 1] = table[3 * c + 1]; img.data[at + 2] = table[3 * c + 2];
        img.data[at + 3] = 255;
      }
  }
  sctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  for (let m = 0; m < count; m++) {
    const gx = (m % cols) * (mw + 1), gy = Math.floor(m / cols) * (mh + 1);
    const x = x0 + (m % cols) * (mw * cell + gap), y = y0 + Math.floor(m / cols) * (mh * cell + gap + (labels ? 12 : 0));
    ctx.drawImage(scratch, gx, gy, mw, mh, x, y + (labels ? 12 : 0), mw * cell, mh * cell);
    ctx.strokeStyle = "#d0d7de";
    ctx.lineWidth = 1;
    ctx.strokeRect(x - 0.5, y + (labels ? 12 : 0) - 0.5, mw * cell + 1, mh * cell + 1);
    if (labels) text(ctx, labels[m], x + (mw * cell) / 2, y + 9, { size: 10, color: MUTED, align: "center" });
  }
}

function fmt(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 100 || a < 0.01) return v.toExponential(1);
  return String(Number(v.toFixed(a >= 10 ? 1 : 2)));
}

// A horizontal color bar from lo to hi with its numbers and what it measures.
const barImages = new Map();
function colorBar(ctx, table, lo, hi, x, y, w, what) {
  if (!barImages.has(table)) {             // the 256 colors as a 256 x 1 image, made once
    const c = document.createElement("canvas");
    c.width = 256;
    c.height = 1;
    const cctx = c.getContext("2d"), img = cctx.createImageData(256, 1);
    for (let k = 0; k < 256; k++) {
      img.data.set([table[3 * k], table[3 * k + 1], table[3 * k + 2], 255], 4 * k);
    }
    cctx.putImageData(img, 0, 0);
    barImages.set(table, c);
  }
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(barImages.get(table), x, y, w, 8);
  ctx.strokeStyle = "#8c959f";
  ctx.strokeRect(x - 0.5, y - 0.5, w + 1, 9);
  text(ctx, fmt(lo), x, y + 20, { size: 10, color: MUTED });
  text(ctx, fmt(hi), x + w, y + 20, { size: 10, color: MUTED, align: "right" });
  const zero = x + (w * (0 - lo)) / (hi - lo);
  if (lo < 0 && hi > 0 && zero - x > 28 && x + w - zero > 28) text(ctx, "0", zero, y + 20, { size: 10, color: MUTED, align: "center" });
  text(ctx, what, x + w + 8, y + 8, { size: 10, color: MUTED });
}

// A bar chart with axes: values[k] as bars from 0, y from lo to hi.
function bars(ctx, values, { x0, y0, w, hgt, lo, hi, xLabel, yLabel, colors, ticks, xTicks, ghost }) {
  const n = values.length, slot = w / n, y = (v) => y0 + hgt - ((v - lo) / (hi - lo)) * hgt;
  ctx.strokeStyle = "#d0d7de";
  ctx.lineWidth = 1;
  for (const t of ticks) {
    ctx.beginPath(); ctx.moveTo(x0, Math.round(y(t)) + 0.5); ctx.lineTo(x0 + w, Math.round(y(t)) + 0.5); ctx.stroke();
    text(ctx, fmt(t), x0 - 4, y(t) + 3, { size: 10, color: MUTED, align: "right" });
  }
  const base = y(Math.max(lo, Math.min(hi, 0)));
  for (let k = 0; k < n; k++) {
    const v = Math.max(lo, Math.min(hi, values[k]));
    if (ghost) {
      const g = Math.max(lo, Math.min(hi, ghost[k]));
      ctx.fillStyle = "#c9d1d9";
      ctx.fillRect(x0 + k * slot + slot * 0.1, Math.min(base, y(g)), slot * 0.4, Math.abs(y(g) - base));
    }
    ctx.fillStyle = typeof colors === "function" ? colors(k, values[k]) : colors;
    const left = ghost ? x0 + k * slot + slot * 0.5 : x0 + k * slot + slot * 0.15, width = ghost ? slot * 0.4 : slot * 0.7;
    ctx.fillRect(left, Math.min(base, y(v)), Math.max(width, 1), Math.max(Math.abs(y(v) - base), v === 0 ? 0 : 1));
  }
  ctx.strokeStyle = "#57606a";
  ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x0, y0 + hgt); ctx.lineTo(x0 + w, y0 + hgt); ctx.stroke();
  for (const k of xTicks) text(ctx, String(k), x0 + (k + 0.5) * slot, y0 + hgt + 12, { size: 10, color: MUTED, align: "center" });
  text(ctx, xLabel, x0 + w / 2, y0 + hgt + 26, { size: 11, color: MUTED, align: "center" });
  ctx.save();
  ctx.translate(12, y0 + hgt / 2);
  ctx.rotate(-Math.PI / 2);
  text(ctx, yLabel, 0, 0, { size: 11, color: MUTED, align: "center" });
  ctx.restore();
}

function pct(p) { return p >= 0.9995 ? "100 %" : p < 0.0005 ? "<0.1 %" : `${(100 * p).toFixed(1)} %`; }
function argmax(a) { let k = 0; for (let i = 1; i < a.length; i++) if (a[i] > a[k]) k = i; return k; }
function middle(a) { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor(s.length / 2)] : 0; }

function decodeSamples(samples) {
  if (!samples || !samples.images) return [];
  const bytes = Uint8Array.from(atob(samples.images), (c) => c.charCodeAt(0));
  const n = Math.floor(bytes.length / 784);
  return Array.from({ length: n }, (_, k) => ({
    pixels: bytes.subarray(784 * k, 784 * (k + 1)),
    label: samples.labels ? samples.labels[k] : null,
    name: samples.names ? samples.names[k] : `sample ${k}`,
  }));
}

// ---------------------------------------------------------------------------
// The widget
// ---------------------------------------------------------------------------
function render({ model, el }) {
  el.classList.add("jupyter-widgets");   // the class every ipywidgets view carries
  const root = h("div", { class: "lenet-live" });
  el.append(root);
  const state = {
    nets: {},            // key -> {parsed web export, source text, saved params, label}
    key: null,
    input: null,         // the current Float32Array(1024), or null when nothing is drawn
    result: null,        // the last forward/backward pass
    target: "auto",      // the class whose score the saliency map explains
    drawnSince: false,   // drawn on since the last sample was loaded
    sampleLabel: null,
    steps: 0,
    times: [],
    announced: null,
  };

  // -- layout -------------------------------------------------------------------------
  const status = h("p", { class: "ll-status", role: "status", "aria-live": "polite" });
  const errorBox = h("p", { class: "ll-error", role: "alert" });

  const padCanvas = h("canvas", { class: "ll-pad", width: PAD, height: PAD, role: "img",
    "aria-label": "Drawing pad: draw one digit with the mouse, a finger or a pen. " +
      "Without a pointer, choose a test digit below." });
  const padCtx = padCanvas.getContext("2d", { willReadFrequently: true });
  const clearButton = h("button", { type: "button", class: "ll-button", text: "Clear" });
  const sampleId = nextId("sample");
  const sampleSelect = h("select", { id: sampleId, class: "ll-select" });
  const variantBox = h("fieldset", { class: "ll-variants" }, h("legend", { text: "Network" }));
  const modelInfo = h("p", { class: "ll-info" });
  const fileId = nextId("file");
  const fileInput = h("input", { id: fileId, type: "file", accept: ".json,application/json", class: "ll-file" });
  const downloadButton = h("button", { type: "button", class: "ll-button ll-secondary", text: "Download this network's file" });

  const drawSection = h("section", { class: "ll-panel ll-draw" },
    h("h3", { text: "Draw a digit" }),
    padCanvas,
    h("div", { class: "ll-row" }, clearButton,
      h("label", { for: sampleId, text: "or start from" }), sampleSelect),
    variantBox);

  const targetId = nextId("target");
  const targetSelect = h("select", { id: targetId, class: "ll-select" });
  const seeSection = h("section", { class: "ll-panel ll-see" }, h("h3", { text: "What the network reads and says" }));
  const seeFigs = h("div", { class: "ll-figs" });
  seeSection.append(status, seeFigs);
  const probFig = figure(seeFigs, 340, 206, "Probabilities of the ten digits");
  const inputFig = figure(seeFigs, 160, 214, "The 32 by 32 input the network reads");
  const salFig = figure(seeFigs, 160, 214, "Saliency map");
  seeSection.append(h("div", { class: "ll-row" }, h("label", { for: targetId, text: "Saliency map of the score of class" }), targetSelect));

  const netSection = h("section", { class: "ll-panel ll-net" }, h("h3", { text: "The network" }),
    modelInfo,
    h("div", { class: "ll-row" }, h("label", { for: fileId, text: "Load your own network (a web export, .json):" }), fileInput,
      downloadButton),
    errorBox);

  const mapsSection = h("section", { class: "ll-panel ll-maps" }, h("h3", { text: "Inside the network: every layer's output" }));
  const mapFigs = h("div", { class: "ll-figs" });
  mapsSection.append(mapFigs);
  const c1Fig = figure(mapFigs, 320, 280, "C1 feature maps");
  const s2Fig = figure(mapFigs, 320, 280, "S2 feature maps");
  const c3Fig = figure(mapFigs, 320, 150, "C3 feature maps");
  const s4Fig = figure(mapFigs, 320, 150, "S4 feature maps");
  const c5Fig = figure(mapFigs, 320, 170, "C5 activations");
  const f6Fig = figure(mapFigs, 320, 170, "F6 activations");

  const labelId = nextId("label"), rateId = nextId("rate");
  const labelSelect = h("select", { id: labelId, class: "ll-select" });
  const rateSelect = h("select", { id: rateId, class: "ll-select" });
  for (let d = 0; d < 10; d++) labelSelect.append(h("option", { value: String(d), text: String(d) }));
  for (const r of LEARNING_RATES) rateSelect.append(h("option", { value: String(r), text: String(r) }));
  rateSelect.value = "0.05";
  const stepButton = h("button", { type: "button", class: "ll-button", text: "One SGD step" });
  const resetButton = h("button", { type: "button", class: "ll-button ll-secondary", text: "Restore the trained weights" });
  const stepInfo = h("p", { class: "ll-info", "aria-live": "polite" });
  const sgdSection = h("section", { class: "ll-panel ll-sgd" }, h("h3", { text: "Train on your digit: one step of gradient descent" }),
    h("div", { class: "ll-row" },
      h("label", { for: labelId, text: "The correct label is" }), labelSelect,
      h("label", { for: rateId, text: "learning rate η" }), rateSelect, stepButton, resetButton),
    stepInfo);
  const sgdFigs = h("div", { class: "ll-figs" });
  sgdSection.append(sgdFigs);
  const dwFig = figure(sgdFigs, 320, 150, "Gradient of the loss with respect to C1's kernels");
  const moveFig = figure(sgdFigs, 320, 210, "Probabilities before and after the step");
  const timing = h("p", { class: "ll-timing" });

  root.append(h("div", { class: "ll-top" }, drawSection, seeSection), mapsSection, sgdSection, netSection, timing);

  // -- networks -------------------------------------------------------------------------
  function describe(net) {
    const p = net.parsed, bits = [];
    bits.push(p.variant === "classic" ? "Classic LeNet-5: tanh and average pooling." : "Modern LeNet-5: ReLU and max pooling.");
    if (p.test) bits.push(`Test accuracy ${(100 * p.test.accuracy).toFixed(2)} %` +
      (p.test.images ? ` on ${p.test.images.toLocaleString("en")} test digits.` : "."));
    bits.push(p.standardize ? `Inputs standardized: (x − ${p.mean}) / ${p.std}.` : "Inputs: pixels in [0, 1].");
    if (p.description) bits.push(p.description);
    return bits.join(" ");
  }

  function addNet(key, textJson, label, where) {
    const parsed = parseWebExport(textJson, where);
    state.nets[key] = { parsed, source: textJson, saved: parsed.model.saveParams(), label };
  }

  function loadModels() {
    const given = model.get("models") || {};
    const problems = [];
    for (const [key, textJson] of Object.entries(given)) {
      try {
        const label = key === "classic" ? "classic (tanh, average pooling)" : key === "modern" ? "modern (ReLU, max pooling)" : key;
        addNet(key, textJson, label, `the network "${key}"`);
      } catch (err) {
        problems.push(err.message);
      }
    }
    if (problems.length) showError(problems.join(" "));
    buildVariantRadios();
    const wanted = model.get("variant");
    select(state.nets[wanted] ? wanted : Object.keys(state.nets)[0] || null, false);
  }

  function buildVariantRadios() {
    variantBox.querySelectorAll("label").forEach((l) => l.remove());
    const name = nextId("variant");
    for (const [key, net] of Object.entries(state.nets)) {
      const radio = h("input", { type: "radio", name, value: key });
      radio.checked = key === state.key;
      radio.addEventListener("change", () => { if (radio.checked) select(key, true); });
      variantBox.append(h("label", { class: "ll-radio" }, radio, ` ${net.label}`));
    }
  }

  function select(key, fromUser) {
    state.key = key;
    variantBox.querySelectorAll("input").forEach((r) => { r.checked = r.value === key; });
    const net = state.nets[key];
    modelInfo.textContent = net ? describe(net) : "No network loaded.";
    if (fromUser && model.get("variant") !== key) { model.set("variant", key); save(); }
    recompute();
  }

  function save() {
    try {
      model.save_changes();
    } catch (err) {
      // A static page has no kernel to send the values to; they stay in the page.
    }
  }

  function showError(message) { errorBox.textContent = message; }

  // -- samples ---------------------------------------------------------------------------
  const samples = decodeSamples(model.get("samples"));
  sampleSelect.append(h("option", { value: "", text: samples.length ? "choose…" : "(none)" }));
  samples.forEach((s, k) => sampleSelect.append(h("option", { value: String(k), text: s.name })));
  sampleSelect.addEventListener("change", () => {
    if (sampleSelect.value !== "") loadSample(Number(sampleSelect.value));
  });

  function loadSample(k) {
    const s = samples[k];
    const small = document.createElement("canvas");
    small.width = small.height = 28;
    const sctx = small.getContext("2d");
    const img = sctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = 255 - s.pixels[i];                      // dark ink on white paper, like the pad
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    sctx.putImageData(img, 0, 0);
    padCtx.fillStyle = PAPER;
    padCtx.fillRect(0, 0, PAD, PAD);
    padCtx.imageSmoothingEnabled = true;
    padCtx.drawImage(small, 0, 0, PAD, PAD);
    state.drawnSince = false;
    state.sampleLabel = s.label;
    if (s.label !== null && s.label !== undefined) labelSelect.value = String(s.label);
    recompute();
    sendDigit();
  }

  // -- drawing ---------------------------------------------------------------------------
  function clearPad() {
    padCtx.fillStyle = PAPER;
    padCtx.fillRect(0, 0, PAD, PAD);
    state.sampleLabel = null;
    sampleSelect.value = "";
    recompute();
  }
  clearButton.addEventListener("click", clearPad);

  let pen = null, scheduled = false;
  function at(e) {
    const r = padCanvas.getBoundingClientRect();
    return [((e.clientX - r.left) * PAD) / r.width, ((e.clientY - r.top) * PAD) / r.height];
  }
  function stroke(from, to) {
    padCtx.strokeStyle = INK;
    padCtx.fillStyle = INK;
    padCtx.lineWidth = STROKE;
    padCtx.lineCap = "round";
    padCtx.lineJoin = "round";
    padCtx.beginPath();
    padCtx.moveTo(from[0], from[1]);
    padCtx.lineTo(to[0], to[1]);
    padCtx.stroke();
  }
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; recompute(); });
  }
  padCanvas.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    try { padCanvas.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer cannot be captured */ }
    pen = at(e);
    stroke(pen, pen);
    if (!state.drawnSince) { state.drawnSince = true; sampleSelect.value = ""; }
    schedule();
  });
  padCanvas.addEventListener("pointermove", (e) => {
    if (!pen) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = at(ev);
      stroke(pen, p);
      pen = p;
    }
    schedule();
  });
  const lift = () => { if (pen) { pen = null; schedule(); sendDigit(); } };
  padCanvas.addEventListener("pointerup", lift);
  padCanvas.addEventListener("pointercancel", lift);
  padCanvas.addEventListener("lostpointercapture", lift);

  function padGray() {
    const rgba = padCtx.getImageData(0, 0, PAD, PAD).data;
    const gray = new Float64Array(PAD * PAD);
    for (let k = 0; k < gray.length; k++) gray[k] = rgba[4 * k];   // ink and paper are gray: R = G = B
    return gray;
  }

  function sendDigit() {
    model.set("digit", state.input ? Array.from(state.input) : []);
    model.set("prediction", state.result ? state.result.prediction : -1);
    save();
  }

  // -- computing -------------------------------------------------------------------------
  // Everything the page shows for one input: the forward pass (every layer's output), the
  // probabilities, and the gradient of the chosen class score (one backward pass).
  function analyze(net, input, target) {
    const m = net.parsed.model, trace = m.forward(tensor([1, 32, 32], input));
    const logits = trace[trace.length - 1].data;
    const probs = softmax(logits);
    const prediction = argmax(probs);
    const t = target === "auto" ? prediction : Number(target);
    const gradient = scoreGradient(m, logits.length, t);   // uses the caches of this forward pass
    return { trace, logits: Float32Array.from(logits), probs, prediction, target: t,
      saliency: Float32Array.from(gradient.data, Math.abs) };
  }

  function prepareInput(net, gray, width, height) {
    return toLenetInput(toMnist28(gray, width, height), net.parsed);
  }

  function recompute() {
    const t0 = performance.now();
    const net = state.nets[state.key];
    state.input = null;
    state.result = null;
    if (net) {
      try {
        state.input = prepareInput(net, padGray(), PAD, PAD);
      } catch (err) {
        if (!(err instanceof NoDigitError)) throw err;
      }
    }
    const t1 = performance.now();
    if (state.input) state.result = analyze(net, state.input, state.target);
    const t2 = performance.now();
    draw();
    const t3 = performance.now(), ms = t3 - t0;
    state.parts = { preprocess: t1 - t0, network: t2 - t1, plots: t3 - t2 };
    state.times.push(ms);
    if (state.times.length > 50) state.times.shift();
    timing.textContent = `Last update: ${ms.toFixed(1)} ms (preprocessing ${(t1 - t0).toFixed(1)}, ` +
      `network forward and backward ${(t2 - t1).toFixed(1)}, plots ${(t3 - t2).toFixed(1)}); ` +
      `median of the last ${state.times.length} updates: ${middle(state.times).toFixed(1)} ms.`;
    return ms;
  }

  // -- drawing the figures ---------------------------------------------------------------
  function stageOutput(name) {            // the output of the last layer of a stage
    const net = state.nets[state.key], r = state.result;
    const k = net.parsed.stages.lastIndexOf(name);
    return r.trace[k + 1];
  }

  function empty(f, heading, message) {
    const ctx = begin(f);
    title(ctx, heading, f);
    text(ctx, message, f.w / 2, f.h / 2, { size: 12, color: MUTED, align: "center" });
    f.canvas.setAttribute("aria-label", `${heading}: ${message}`);
  }

  function draw() {
    const r = state.result, net = state.nets[state.key];
    if (!r) {
      const why = net ? "draw a digit in the pad" : "no network loaded";
      for (const [f, t] of [[probFig, "Probabilities"], [inputFig, "Input (32×32)"], [salFig, "Saliency"],
        [c1Fig, "C1"], [s2Fig, "S2"], [c3Fig, "C3"], [s4Fig, "S4"], [c5Fig, "C5"], [f6Fig, "F6"]]) empty(f, t, why);
      status.textContent = net ? "Draw a digit in the pad, or choose a test digit." : "No network loaded.";
      state.announced = null;
      return;
    }
    const classic = net.parsed.variant === "classic";
    drawProbabilities(r);
    drawInput(net);
    drawSaliency(r);
    drawMapGrid(c1Fig, "C1", stageOutput("C1"), 3, 3.2, classic, ["0", "1", "2", "3", "4", "5"]);
    drawMapGrid(s2Fig, "S2", stageOutput("S2"), 3, 6.4, classic, ["0", "1", "2", "3", "4", "5"]);
    drawMapGrid(c3Fig, "C3", stageOutput("C3"), 8, 3.5, classic, null);
    drawMapGrid(s4Fig, "S4", stageOutput("S4"), 8, 7, classic, null);
    drawUnits(c5Fig, "C5", stageOutput("C5").data, classic);
    drawUnits(f6Fig, "F6", stageOutput("F6").data, classic);
    const sentence = `The network reads a ${r.prediction} (probability ${pct(r.probs[r.prediction])}).`;
    if (state.announced !== sentence) { status.textContent = sentence; state.announced = sentence; }
  }

  function drawProbabilities(r) {
    const ctx = begin(probFig);
    title(ctx, `Prediction: ${r.prediction}   (${pct(r.probs[r.prediction])})`, probFig);
    bars(ctx, r.probs, { x0: 44, y0: 30, w: 284, hgt: 130, lo: 0, hi: 1, xLabel: "digit", yLabel: "probability",
      colors: (k) => (k === r.prediction ? ACCENT : "#9ecbff"), ticks: [0, 0.5, 1], xTicks: [...Array(10).keys()] });
    const order = [...r.probs.keys()].sort((a, b) => r.probs[b] - r.probs[a]).slice(0, 3);
    probFig.canvas.setAttribute("aria-label", "Probabilities of the ten digits: " +
      order.map((k) => `${k}: ${pct(r.probs[k])}`).join(", ") + ", the others less.");
  }

  function drawInput(net) {
    const ctx = begin(inputFig), x = state.input;
    let lo = Infinity, hi = -Infinity;
    for (const v of x) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    title(ctx, "Input: 32×32", inputFig);
    text(ctx, net.parsed.standardize ? "as MNIST, standardized" : "as MNIST, in [0, 1]", 8, 32, { size: 10, color: MUTED });
    paintMaps(ctx, x, { count: 1, mh: 32, mw: 32, cols: 1, x0: 13, y0: 40, cell: 4.5, gap: 0, table: GRAY_R, lo, hi });
    colorBar(ctx, GRAY_R, lo, hi, 13, 190, 90, "value");
    inputFig.canvas.setAttribute("aria-label", "The 32 by 32 input the network reads: the drawing cropped, scaled to a 20-pixel box and centered by its center of mass.");
  }

  function drawSaliency(r) {
    const ctx = begin(salFig);
    let hi = 0;
    for (const v of r.saliency) hi = Math.max(hi, v);
    title(ctx, `Saliency |∂z${subscript(r.target)} / ∂x|`, salFig);
    text(ctx, `where ink matters to class ${r.target}`, 8, 32, { size: 10, color: MUTED });
    paintMaps(ctx, r.saliency, { count: 1, mh: 32, mw: 32, cols: 1, x0: 13, y0: 40, cell: 4.5, gap: 0, table: HEAT, lo: 0, hi });
    colorBar(ctx, HEAT, 0, hi, 13, 190, 90, "|∂z/∂x|");
    salFig.canvas.setAttribute("aria-label", `Saliency map of the score of class ${r.target}: the absolute gradient of that score with respect to each input pixel, largest ${fmt(hi)}.`);
  }

  function subscript(d) { return "₀₁₂₃₄₅₆₇₈₉"[d]; }

  function drawMapGrid(f, stage, out, cols, cell, classic, labels) {
    const [C, H, W] = out.shape, ctx = begin(f);
    let m = 0;
    for (const v of out.data) m = Math.max(m, Math.abs(v));
    // tanh: blue-white-red on tanh's range; ReLU (never negative): white-red from 0 to the layer's largest value
    const lo = classic ? -1 : 0, hi = classic ? 1 : Math.max(m, 1e-6), table = classic ? DIVERGING : REDS;
    const what = { C1: "conv 5×5", S2: "2×2 pooling", C3: "conv 5×5", S4: "2×2 pooling" }[stage];
    const act = classic ? (stage[0] === "C" ? ", tanh" : ", average") : (stage[0] === "C" ? ", ReLU" : ", max");
    title(ctx, `${stage}: ${C} maps of ${H}×${W}`, f);
    text(ctx, `${what}${act}`, f.w - 8, 18, { size: 10, color: MUTED, align: "right" });
    const gap = cols > 3 ? 4 : 10, width = cols * W * cell + (cols - 1) * gap, x0 = Math.round((f.w - width) / 2);
    paintMaps(ctx, out.data, { count: C, mh: H, mw: W, cols, x0, y0: 28, cell, gap, table, lo, hi, labels });
    colorBar(ctx, table, lo, hi, x0, f.h - 26, 120, "activation");
    f.canvas.setAttribute("aria-label", `${stage}: ${C} feature maps of ${H} by ${W} pixels; ` +
      (classic ? "blue negative, red positive, white zero." : "red positive, white zero."));
  }

  function drawUnits(f, stage, values, classic) {
    const ctx = begin(f);
    let m = 0;
    for (const v of values) m = Math.max(m, Math.abs(v));
    const hi = classic ? 1 : Math.max(m, 1e-6), lo = classic ? -1 : 0;
    title(ctx, `${stage}: ${values.length} units`, f);
    text(ctx, `${stage === "C5" ? "conv 5×5 over all of S4" : "linear 120 → 84"}${classic ? ", tanh" : ", ReLU"}`,
      f.w - 8, 18, { size: 10, color: MUTED, align: "right" });
    const ticks = classic ? [-1, 0, 1] : [0, hi];
    const n = values.length, xTicks = [0, Math.floor(n / 2), n - 1];
    bars(ctx, values, { x0: 44, y0: 28, w: f.w - 56, hgt: 100, lo, hi, xLabel: "unit", yLabel: "activation",
      colors: (k, v) => (v >= 0 ? "#d6604d" : "#4393c3"), ticks, xTicks });
    f.canvas.setAttribute("aria-label", `${stage}: the ${n} activations as bars; red positive, blue negative.`);
  }

  // -- one SGD step ----------------------------------------------------------------------
  function sgdStep() {
    const net = state.nets[state.key];
    if (!net || !state.input) { stepInfo.textContent = "Draw a digit first."; return null; }
    const label = Number(labelSelect.value), lr = Number(rateSelect.value);
    const out = stepOn(net, state.input, label, lr);
    state.steps += 1;
    drawStep(out, label, lr);
    recompute();
    return out;
  }

  // Forward, loss, backward, update -- lenet_core's train_step for one image -- and the
  // probabilities after the step.
  function stepOn(net, input, label, lr) {
    const m = net.parsed.model, x = tensor([1, 32, 32], input);
    const trace = m.forward(x);
    const before = crossEntropy(trace[trace.length - 1], label);
    m.backward(before.grad, false);                // the image's own gradient is not needed
    const dW = Float32Array.from(m.layers[0].grads.W), db = Float32Array.from(m.layers[0].grads.b);
    m.sgdStep(lr);
    const after = m.forward(x);
    const a = crossEntropy(after[after.length - 1], label);
    return { before: before.probs, after: a.probs, lossBefore: before.loss, lossAfter: a.loss, dW, db };
  }

  function drawStep(out, label, lr) {
    let ctx = begin(dwFig);
    let m = 0;
    for (const v of out.dW) m = Math.max(m, Math.abs(v));
    m = Math.max(m, 1e-12);
    title(ctx, `∂L/∂W of C1's six 5×5 kernels (label ${label})`, dwFig);
    const labels = ["0", "1", "2", "3", "4", "5"];
    paintMaps(ctx, out.dW, { count: 6, mh: 5, mw: 5, cols: 6, x0: 20, y0: 26, cell: 8, gap: 10, table: DIVERGING, lo: -m, hi: m, labels });
    colorBar(ctx, DIVERGING, -m, m, 20, dwFig.h - 26, 150, "∂L/∂W");
    dwFig.canvas.setAttribute("aria-label", `The gradient of the loss for label ${label} with respect to each weight of C1's six 5 by 5 kernels; the step subtracts ${lr} times it.`);
    ctx = begin(moveFig);
    title(ctx, `η = ${lr}: p(${label}) ${pct(out.before[label])} → ${pct(out.after[label])}`, moveFig);
    bars(ctx, out.after, { x0: 44, y0: 30, w: 274, hgt: 120, lo: 0, hi: 1, xLabel: "digit (gray: before, blue: after)",
      yLabel: "probability", colors: (k) => (k === label ? ACCENT : "#9ecbff"), ticks: [0, 0.5, 1],
      xTicks: [...Array(10).keys()], ghost: out.before });
    moveFig.canvas.setAttribute("aria-label", `Probabilities before and after the step: the probability of ${label} went from ${pct(out.before[label])} to ${pct(out.after[label])}.`);
    stepInfo.textContent = `Loss −log p(${label}): ${out.lossBefore.toPrecision(3)} → ${out.lossAfter.toPrecision(3)}. ` +
      `${state.steps} step${state.steps === 1 ? "" : "s"} taken: the network above now uses the changed weights ` +
      "(\u201cRestore the trained weights\u201d undoes them).";
  }

  stepButton.addEventListener("click", sgdStep);
  resetButton.addEventListener("click", () => {
    const net = state.nets[state.key];
    if (!net) return;
    net.parsed.model.loadParams(net.saved);
    state.steps = 0;
    stepInfo.textContent = "The trained weights are back.";
    recompute();
  });

  // -- controls --------------------------------------------------------------------------
  targetSelect.append(h("option", { value: "auto", text: "predicted" }));
  for (let d = 0; d < 10; d++) targetSelect.append(h("option", { value: String(d), text: String(d) }));
  targetSelect.addEventListener("change", () => { state.target = targetSelect.value; recompute(); });

  fileInput.addEventListener("change", async () => {
    const file = fileInput.files && fileInput.files[0];
    if (!file) return;
    showError("");
    try {
      if (file.size > 20e6) throw new Error(`${file.name} is ${file.size.toLocaleString("en")} bytes; a LeNet-5 export is about 330 KB`);
      const textJson = await file.text();
      addNet("file", textJson, `your file: ${file.name}`, file.name);
      buildVariantRadios();
      select("file", false);
      status.textContent = `Loaded ${file.name}: ${state.result ? `it reads a ${state.result.prediction}` : "draw a digit"}.`;
    } catch (err) {
      showError(`Could not load that file. ${err.message}`);
    } finally {
      fileInput.value = "";
    }
  });

  downloadButton.addEventListener("click", () => {
    const net = state.nets[state.key];
    if (!net) return;
    const url = URL.createObjectURL(new Blob([net.source], { type: "application/json" }));
    const a = h("a", { href: url, download: `${net.parsed.name}.web.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });

  model.on("change:models", () => {
    const kept = state.nets.file;                  // a network loaded from a file stays
    state.nets = kept ? { file: kept } : {};
    loadModels();
  });
  model.on("change:variant", () => { const k = model.get("variant"); if (k !== state.key && state.nets[k]) select(k, false); });

  // -- start -----------------------------------------------------------------------------
  padCtx.fillStyle = PAPER;
  padCtx.fillRect(0, 0, PAD, PAD);
  empty(dwFig, "∂L/∂W of C1's kernels", "press \u201cOne SGD step\u201d");
  empty(moveFig, "Probabilities before and after", "press \u201cOne SGD step\u201d");
  loadModels();
  if (samples.length) { sampleSelect.value = "0"; loadSample(0); }

  // A handle for tests and for the curious (in the browser console): everything the page
  // computes, without the pictures. Arrays come back as plain arrays of numbers.
  const api = {
    ready: true,
    models: () => Object.keys(state.nets),
    select: (key) => select(key, true),
    padImage: () => ({ gray: Array.from(padGray()), width: PAD, height: PAD }),
    preprocess(gray, width, height, key = state.key) {
      try {
        return Array.from(prepareInput(state.nets[key], gray, width, height));
      } catch (err) {
        return { error: err.message };
      }
    },
    // Run one image (a 32x32 input, or gray levels to preprocess) through a network: the
    // logits, probabilities, the saliency map of class `target` and, for label `label`, C1's
    // weight gradient and the probabilities after an SGD step with rate lr (the weights are
    // put back afterwards).
    run({ input, gray, width, height }, key = state.key, label = 0, target = "auto", lr = 0.01) {
      const net = state.nets[key];
      const x = input ? Float32Array.from(input) : prepareInput(net, gray, width, height);
      const r = analyze(net, x, target);
      const saved = net.parsed.model.saveParams();
      const step = stepOn(net, x, label, lr);
      net.parsed.model.loadParams(saved);
      return { input: Array.from(x), logits: Array.from(r.logits), probs: Array.from(r.probs), prediction: r.prediction,
        saliency: Array.from(r.saliency), dW: Array.from(step.dW), db: Array.from(step.db), probsAfter: Array.from(step.after) };
    },
    redraw: () => recompute(),
    timeRedraws(n = 10) { return Array.from({ length: n }, () => { const ms = recompute(); return { ms, ...state.parts }; }); },
    state: () => ({
      key: state.key,
      prediction: state.result ? state.result.prediction : -1,
      probs: state.result ? Array.from(state.result.probs) : [],
      c1: state.result ? Array.from(stageOutput("C1").data.slice(0, 784)) : [],
      steps: state.steps,
    }),
    sgdStep: () => { const out = sgdStep(); return out && { before: Array.from(out.before), after: Array.from(out.after) }; },
  };
  root.lenetLive = api;
  window.lenetLive = api;
  return () => { if (window.lenetLive === api) delete window.lenetLive; };
}

export default { render };
