// lenet.js -- LeNet-5's layers in JavaScript, the twin of lenet_core's NumPy layers.
//
// The book's page "Draw a digit" runs the network in the reader's browser with this file;
// tests/browser/test_live_page.py feeds the same images to it and to lenet_core and requires
// the logits, probabilities, saliency map and C1 weight gradients to agree.
//
// Conventions, as in lenet_core/layers.py, for ONE image (no batch axis):
//   * a tensor is {data: Float32Array, shape: [C, H, W]} for maps, or shape [D] for a vector,
//     stored row by row (NumPy's C order): element (c, i, j) is data[(c * H + i) * W + j];
//   * parameters have PyTorch's shapes: Conv2D W (F, C, K, K), Linear W (out, in);
//   * every layer has forward(x), which keeps in this.cache what the backward pass needs, and
//     backward(dout) = dL/dx, which also sets this.grads = {W, b} for layers with parameters.
// Numbers are float32: every array is a Float32Array, so every stored number is rounded to
// float32 as in lenet_core. Inside one output value the sum is accumulated in JavaScript's
// float64 and rounded once when stored; NumPy adds float32 numbers in its own order, so the two
// agree to about 1e-6 relative, not bit for bit.

const f32 = Math.fround;

export function tensor(shape, data) {
  const size = shape.reduce((a, b) => a * b, 1);
  return { shape: shape.slice(), data: data || new Float32Array(size) };
}

// ---------------------------------------------------------------------------
// Conv2D: out[f, i, j] = b[f] + sum_{c, u, v} W[f, c, u, v] * xp[c, i*S + u, j*S + v]
// where xp is x with P zeros on every side; H_out = floor((H + 2P - K) / S) + 1.
// ---------------------------------------------------------------------------
export class Conv2D {
  constructor(config, W, b) {
    this.C = config.in_channels;
    this.F = config.out_channels;
    this.K = config.kernel_size;
    this.S = config.stride;
    this.P = config.padding;
    this.params = { W, b };     // Float32Array (F*C*K*K), Float32Array (F)
    this.grads = null;
    this.cache = null;
  }

  outputShape([C, H, W]) {
    const { K, S, P } = this;
    return [this.F, Math.floor((H + 2 * P - K) / S) + 1, Math.floor((W + 2 * P - K) / S) + 1];
  }

  forward(x) {
    const [C, H, W] = x.shape;
    const { F, K, S, P } = this;
    const [, Ho, Wo] = this.outputShape(x.shape);
    const out = tensor([F, Ho, Wo]);
    const w = this.params.W, b = this.params.b, xd = x.data;
    for (let f = 0; f < F; f++) {
      for (let i = 0; i < Ho; i++) {
        // kernel rows u whose input row r = i*S + u - P lies inside x (the others meet padding zeros)
        const u0 = Math.max(0, P - i * S), u1 = Math.min(K, H + P - i * S);
        for (let j = 0; j < Wo; j++) {
          const v0 = Math.max(0, P - j * S), v1 = Math.min(K, W + P - j * S);
          let sum = b[f];
          for (let c = 0; c < C; c++) {
            for (let u = u0; u < u1; u++) {
              const wk = ((f * C + c) * K + u) * K, xk = (c * H + i * S + u - P) * W + j * S - P;
              for (let v = v0; v < v1; v++) sum += w[wk + v] * xd[xk + v];
            }
          }
          out.data[(f * Ho + i) * Wo + j] = sum;          // rounded to float32 here
        }
      }
    }
    this.cache = x;
    return out;
  }

  // dW[f, c, u, v] = sum_{i, j} dout[f, i, j] * xp[c, i*S + u, j*S + v]
  // db[f]          = sum_{i, j} dout[f, i, j]
  // dx[c, r, q]    = sum over every (f, i, j, u, v) whose window reads x[c, r, q] of
  //                  dout[f, i, j] * W[f, c, u, v]   (the windows overlap: contributions add up)
  // inputGrad = false skips dx, paramGrads = false skips dW and db (a saliency map needs dx only).
  backward(dout, inputGrad = true, paramGrads = true) {
    const x = this.cache;
    if (!x) throw new Error("Conv2D.backward before forward");
    const [C, H, W] = x.shape;
    const { F, K, S, P } = this;
    const [, Ho, Wo] = dout.shape;
    const w = this.params.W, xd = x.data, g = dout.data;
    const dW = paramGrads ? new Float64Array(F * C * K * K) : null, db = new Float64Array(F);
    const dx = inputGrad ? new Float64Array(C * H * W) : null;
    for (let f = 0; f < F; f++) {
      for (let i = 0; i < Ho; i++) {
        const u0 = Math.max(0, P - i * S), u1 = Math.min(K, H + P - i * S);
        for (let j = 0; j < Wo; j++) {
          const d = g[(f * Ho + i) * Wo + j];
          if (d === 0) continue;
          db[f] += d;
          const v0 = Math.max(0, P - j * S), v1 = Math.min(K, W + P - j * S);
          for (let c = 0; c < C; c++) {
            for (let u = u0; u < u1; u++) {
              const wk = ((f * C + c) * K + u) * K, xk = (c * H + i * S + u - P) * W + j * S - P;
              if (dW) for (let v = v0; v < v1; v++) dW[wk + v] += d * xd[xk + v];
              if (dx) for (let v = v0; v < v1; v++) dx[xk + v] += d * w[wk + v];
            }
          }
        }
      }
    }
    if (paramGrads) this.grads = { W: Float32Array.from(dW), b: Float32Array.from(db) };
    return dx ? tensor([C, H, W], Float32Array.from(dx)) : null;
  }
}

// ---------------------------------------------------------------------------
// Pooling over K x K windows with stride S (floor mode, no padding).
// ---------------------------------------------------------------------------
function poolShape([C, H, W], K, S) {
  return [C, Math.floor((H - K) / S) + 1, Math.floor((W - K) / S) + 1];
}

// AvgPool2D: out[c, i, j] = (1 / K^2) * sum_{u, v} x[c, i*S + u, j*S + v]
// backward spreads each gradient evenly: dx[c, i*S + u, j*S + v] += dout[c, i, j] / K^2
export class AvgPool2D {
  constructor(config) { this.K = config.kernel_size; this.S = config.stride; this.params = null; }

  forward(x) {
    const [C, H, W] = x.shape, { K, S } = this;
    const [, Ho, Wo] = poolShape(x.shape, K, S);
    const out = tensor([C, Ho, Wo]), scale = f32(1 / (K * K));
    for (let c = 0; c < C; c++)
      for (let i = 0; i < Ho; i++)
        for (let j = 0; j < Wo; j++) {
          let sum = 0;
          for (let u = 0; u < K; u++)
            for (let v = 0; v < K; v++) sum += x.data[(c * H + i * S + u) * W + j * S + v];
          out.data[(c * Ho + i) * Wo + j] = sum * scale;
        }
    this.cache = x.shape;
    return out;
  }

  backward(dout) {
    const [C, H, W] = this.cache, { K, S } = this;
    const [, Ho, Wo] = dout.shape;
    const dx = new Float64Array(C * H * W), scale = f32(1 / (K * K));
    for (let c = 0; c < C; c++)
      for (let i = 0; i < Ho; i++)
        for (let j = 0; j < Wo; j++) {
          const share = f32(dout.data[(c * Ho + i) * Wo + j] * scale);
          for (let u = 0; u < K; u++)
            for (let v = 0; v < K; v++) dx[(c * H + i * S + u) * W + j * S + v] += share;
        }
    return tensor([C, H, W], Float32Array.from(dx));
  }
}

// MaxPool2D: out[c, i, j] = max_{u, v} x[c, i*S + u, j*S + v]
// backward routes each gradient to the input that won the max; on ties, to the first maximum
// of the window in row-major order (as lenet_core and PyTorch do): the scan below keeps the
// first position whose value is strictly larger than everything before it.
export class MaxPool2D {
  constructor(config) { this.K = config.kernel_size; this.S = config.stride; this.params = null; }

  forward(x) {
    const [C, H, W] = x.shape, { K, S } = this;
    const [, Ho, Wo] = poolShape(x.shape, K, S);
    const out = tensor([C, Ho, Wo]), winner = new Int32Array(C * Ho * Wo);
    for (let c = 0; c < C; c++)
      for (let i = 0; i < Ho; i++)
        for (let j = 0; j < Wo; j++) {
          let best = -Infinity, at = -1;
          for (let u = 0; u < K; u++)
            for (let v = 0; v < K; v++) {
              const k = (c * H + i * S + u) * W + j * S + v;
              if (x.data[k] > best) { best = x.data[k]; at = k; }
            }
          out.data[(c * Ho + i) * Wo + j] = best;
          winner[(c * Ho + i) * Wo + j] = at;
        }
    this.cache = { shape: x.shape, winner };
    return out;
  }

  backward(dout) {
    const { shape, winner } = this.cache;
    const dx = new Float64Array(shape[0] * shape[1] * shape[2]);
    for (let k = 0; k < winner.length; k++) dx[winner[k]] += dout.data[k];
    return tensor(shape, Float32Array.from(dx));
  }
}

// ---------------------------------------------------------------------------
// Activations, elementwise. Both keep their output: the derivative is read from it.
// ---------------------------------------------------------------------------
// Tanh: out = tanh(x); dx = dout * (1 - out^2)
export class Tanh {
  constructor() { this.params = null; }
  forward(x) {
    const out = tensor(x.shape);
    for (let k = 0; k < out.data.length; k++) out.data[k] = Math.tanh(x.data[k]);
    this.cache = out;
    return out;
  }
  backward(dout) {
    const out = this.cache.data, dx = tensor(dout.shape);
    for (let k = 0; k < dx.data.length; k++) dx.data[k] = dout.data[k] * f32(1 - f32(out[k] * out[k]));
    return dx;
  }
}

// ReLU: out = max(x, 0); dx = dout where out > 0, else 0 (0 at exactly 0, as in PyTorch)
export class ReLU {
  constructor() { this.params = null; }
  forward(x) {
    const out = tensor(x.shape);
    for (let k = 0; k < out.data.length; k++) out.data[k] = x.data[k] > 0 ? x.data[k] : 0;
    this.cache = out;
    return out;
  }
  backward(dout) {
    const out = this.cache.data, dx = tensor(dout.shape);
    for (let k = 0; k < dx.data.length; k++) dx.data[k] = out[k] > 0 ? dout.data[k] : 0;
    return dx;
  }
}

// Flatten: (C, H, W) -> (C*H*W,), the same numbers in the same (row-major) order.
export class Flatten {
  constructor() { this.params = null; }
  forward(x) { this.cache = x.shape; return { shape: [x.data.length], data: x.data }; }
  backward(dout) { return { shape: this.cache.slice(), data: dout.data }; }
}

// ---------------------------------------------------------------------------
// Linear: out = W x + b.   dW = dout x^T (an outer product),  db = dout,  dx = W^T dout
// ---------------------------------------------------------------------------
export class Linear {
  constructor(config, W, b) {
    this.In = config.in_features;
    this.Out = config.out_features;
    this.params = { W, b };
    this.grads = null;
  }
  forward(x) {
    const { In, Out } = this, w = this.params.W, out = tensor([Out]);
    for (let o = 0; o < Out; o++) {
      let sum = this.params.b[o];
      for (let i = 0; i < In; i++) sum += w[o * In + i] * x.data[i];
      out.data[o] = sum;
    }
    this.cache = x;
    return out;
  }
  backward(dout, inputGrad = true, paramGrads = true) {
    const { In, Out } = this, w = this.params.W, x = this.cache.data, g = dout.data;
    const dx = new Float64Array(In);
    for (let o = 0; o < Out; o++)
      for (let i = 0; i < In; i++) dx[i] += g[o] * w[o * In + i];
    if (paramGrads) {
      const dW = new Float32Array(Out * In);
      for (let o = 0; o < Out; o++)
        for (let i = 0; i < In; i++) dW[o * In + i] = g[o] * x[i];
      this.grads = { W: dW, b: Float32Array.from(g) };
    }
    return inputGrad ? tensor([In], Float32Array.from(dx)) : null;
  }
}

// ---------------------------------------------------------------------------
// Softmax and the cross-entropy loss of one image with label y.
//   p_k = exp(z_k - max z) / sum_j exp(z_j - max z)
//   L = -log p_y,   dL/dz_k = p_k - [k == y]
// ---------------------------------------------------------------------------
export function softmax(logits) {
  const z = logits.data || logits;
  let max = -Infinity;
  for (const v of z) max = Math.max(max, v);
  const e = Array.from(z, (v) => Math.exp(v - max));
  const total = e.reduce((a, b) => a + b, 0);
  return Float32Array.from(e, (v) => v / total);
}

export function crossEntropy(logits, y) {
  const p = softmax(logits);
  const grad = Float32Array.from(p);
  grad[y] = f32(grad[y] - 1);
  return { loss: -Math.log(p[y]), probs: p, grad: tensor([p.length], grad) };
}

// ---------------------------------------------------------------------------
// Sequential: the layers in order, as lenet_core.models.Sequential.
// ---------------------------------------------------------------------------
export class Sequential {
  constructor(layers) { this.layers = layers; }

  // Every layer's output: trace[0] is the input, trace[k + 1] the output of layer k.
  forward(x) {
    const trace = [x];
    for (const layer of this.layers) trace.push(layer.forward(trace[trace.length - 1]));
    return trace;
  }

  // dL/dx from dL/d(output); every layer with parameters sets its grads on the way, unless
  // paramGrads is false. inputGrad = false: the first layer does not compute dL/dx (training
  // needs only the weights' gradients; lenet_core skips it the same way).
  backward(dout, inputGrad = true, paramGrads = true) {
    for (let k = this.layers.length - 1; k >= 0; k--) {
      dout = this.layers[k].backward(dout, k === 0 ? inputGrad : true, paramGrads);
    }
    return dout;
  }

  // One step of plain SGD on every parameter, in float32 as lenet_core.SGD does:
  // p <- p - float32(lr) * g.
  sgdStep(lr) {
    const rate = f32(lr);
    for (const layer of this.layers) {
      if (!layer.params) continue;
      for (const key of ["W", "b"]) {
        const p = layer.params[key], g = layer.grads[key];
        for (let k = 0; k < p.length; k++) p[k] = p[k] - f32(rate * g[k]);
      }
    }
  }

  // A copy of every parameter array, and putting such a copy back.
  saveParams() {
    return this.layers.map((l) => (l.params ? { W: l.params.W.slice(), b: l.params.b.slice() } : null));
  }
  loadParams(saved) {
    this.layers.forEach((l, k) => {
      if (l.params) { l.params.W.set(saved[k].W); l.params.b.set(saved[k].b); }
    });
  }
}

// The gradient of one class score (logit) z_t with respect to the input, right after a forward
// pass (it uses the layers' caches): a backward pass started from dout = e_t, 1 at class t and
// 0 elsewhere, since sum_k dout_k z_k is then z_t -- exactly what lenet_core.explain does.
export function scoreGradient(model, classes, target) {
  const e = tensor([classes]);
  e.data[target] = 1;
  return model.backward(e, true, false);       // no weight gradients needed
}

// The saliency map of lenet_core.explain.saliency_map: |dz_t/dx| (the maximum over the input's
// channels; LeNet-5 has one).
export function saliency(model, x, target) {
  const trace = model.forward(x);
  const g = scoreGradient(model, trace[trace.length - 1].data.length, target);
  return { trace, gradient: g, saliency: Float32Array.from(g.data, Math.abs) };
}

// ---------------------------------------------------------------------------
// Reading a web export (lenet_core/webexport.py describes the format) with the same checks
// as lenet_core.webexport.read_web_export. Every problem is an Error saying what is wrong.
// ---------------------------------------------------------------------------
export const FORMAT_NAME = "lenet_core-web";
export const FORMAT_VERSION = 1;

function conv(c, f) { return { type: "Conv2D", in_channels: c, out_channels: f, kernel_size: 5, stride: 1, padding: 0 }; }
function pool(type) { return { type, kernel_size: 2, stride: 2 }; }
function linear(i, o) { return { type: "Linear", in_features: i, out_features: o }; }
function lenet5(act, pooling) {
  return [conv(1, 6), { type: act }, pool(pooling), conv(6, 16), { type: act }, pool(pooling),
    conv(16, 120), { type: act }, { type: "Flatten" }, linear(120, 84), { type: act }, linear(84, 10)];
}
export const LENET5 = { classic: lenet5("Tanh", "AvgPool2D"), modern: lenet5("ReLU", "MaxPool2D") };
const LAYER_TYPES = { Conv2D, AvgPool2D, MaxPool2D, Tanh, ReLU, Flatten, Linear };

let crcTable = null;
export function crc32(bytes) {              // the CRC-32 of zlib.crc32 (polynomial 0xEDB88320)
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let k = 0; k < bytes.length; k++) crc = crcTable[(crc ^ bytes[k]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function decodeArray(entry, shape, where) {
  if (!entry || typeof entry !== "object" || !("shape" in entry) || !("data" in entry) || !("crc32" in entry))
    throw new Error(`${where}: expected an object with shape, crc32 and data`);
  if (JSON.stringify(entry.shape) !== JSON.stringify(shape))
    throw new Error(`${where}: has shape [${entry.shape}], but the layer needs [${shape}]`);
  let binary;
  try {
    if (typeof entry.data !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(entry.data)) throw new Error();
    binary = atob(entry.data);
  } catch (err) {
    throw new Error(`${where}: the data is not valid base64 (the file is damaged)`);
  }
  const size = shape.reduce((a, b) => a * b, 1);
  if (binary.length !== 4 * size)
    throw new Error(`${where}: holds ${binary.length} bytes, expected ${4 * size} (the file is truncated or damaged)`);
  const bytes = Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
  if (crc32(bytes) !== entry.crc32)
    throw new Error(`${where}: the checksum does not match the data (the file is damaged)`);
  const view = new DataView(bytes.buffer), out = new Float32Array(size);
  for (let k = 0; k < size; k++) {
    out[k] = view.getFloat32(4 * k, true);          // little-endian
    if (!Number.isFinite(out[k])) throw new Error(`${where}: holds numbers that are not finite (inf or NaN)`);
  }
  return out;
}

// text: the JSON of a web export. Returns {model, variant, standardize, mean, std, test, name,
// description, stages}; stages[k] names the part of LeNet-5 layer k belongs to (C1, S2, ...).
export function parseWebExport(text, where = "web export") {
  if (typeof text !== "string") throw new Error(`${where}: expected text`);
  if (text.startsWith("PK"))
    throw new Error(`${where}: is a zip archive (a lenet_core checkpoint?), not a web export; export it first: ` +
      "python -m lenet_core export CHECKPOINT OUT.web.json");
  let meta;
  try {
    meta = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: is not valid JSON (${err.message}); the file may be truncated`);
  }
  if (!meta || typeof meta !== "object" || meta.format !== FORMAT_NAME)
    throw new Error(`${where}: is not a lenet_core web export (no "format": "${FORMAT_NAME}")`);
  if (!Number.isInteger(meta.format_version) || meta.format_version < 1)
    throw new Error(`${where}: has an invalid format_version ${JSON.stringify(meta.format_version)}`);
  if (meta.format_version > FORMAT_VERSION)
    throw new Error(`${where}: uses web export format version ${meta.format_version}; this page reads up to ${FORMAT_VERSION}`);
  const reference = LENET5[meta.variant];
  if (!reference) throw new Error(`${where}: variant must be classic or modern, got ${JSON.stringify(meta.variant)}`);
  const prep = meta.preprocessing;
  if (!prep || typeof prep.standardize !== "boolean")
    throw new Error(`${where}: preprocessing must say whether inputs are standardized ("standardize": true or false)`);
  const mean = prep.mean ?? 0.1307, std = prep.std ?? 0.3081;
  if (!Number.isFinite(mean) || !Number.isFinite(std) || !(std > 0))
    throw new Error(`${where}: preprocessing needs a finite mean and a positive std, got mean ${mean}, std ${std}`);
  const layers = meta.layers;
  if (!Array.isArray(layers) || layers.length !== reference.length)
    throw new Error(`${where}: a ${meta.variant} LeNet-5 has ${reference.length} layers, the file lists ` +
      `${Array.isArray(layers) ? layers.length : "none"}`);
  const built = layers.map((entry, k) => {
    const expected = reference[k];
    const got = entry && typeof entry === "object" ? entry : {};
    const same = Object.keys(expected).every((key) => got[key] === expected[key]) &&
      Object.keys(got).every((key) => key in expected || key === "params" || key === "stage");
    if (!same) throw new Error(`${where}: layer ${k} is ${JSON.stringify(got).slice(0, 200)}, but a ${meta.variant} ` +
      `LeNet-5 has ${JSON.stringify(expected)} there`);
    const Type = LAYER_TYPES[expected.type];
    if (expected.type === "Conv2D" || expected.type === "Linear") {
      const shapes = expected.type === "Conv2D"
        ? { W: [expected.out_channels, expected.in_channels, expected.kernel_size, expected.kernel_size], b: [expected.out_channels] }
        : { W: [expected.out_features, expected.in_features], b: [expected.out_features] };
      const params = got.params || {};
      for (const key of ["W", "b"])
        if (!(key in params)) throw new Error(`${where}: layer ${k} (${expected.type}) has no parameter ${key}`);
      return new Type(expected, decodeArray(params.W, shapes.W, `${where}, layer ${k} W`),
        decodeArray(params.b, shapes.b, `${where}, layer ${k} b`));
    }
    return new Type(expected);
  });
  const test = meta.test && typeof meta.test === "object" ? meta.test : {};
  return {
    model: new Sequential(built),
    variant: meta.variant,
    standardize: prep.standardize,
    mean, std,
    test: Number.isFinite(test.accuracy) ? { accuracy: test.accuracy, images: test.images ?? null } : null,
    name: String(meta.name ?? `lenet5-${meta.variant}`),
    description: String(meta.description ?? ""),
    stages: layers.map((entry) => String(entry.stage ?? "")),
  };
}
