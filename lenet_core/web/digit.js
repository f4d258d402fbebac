// digit.js -- a drawn digit made into a LeNet-5 input, the twin of lenet_core/digits.py.
//
// The steps are those of lenet_core.preprocess_digit_image, with the same arithmetic in the
// same order, so both give the same float32 numbers bit for bit (tests/browser/
// test_live_page.py compares them on drawings and MNIST digits):
//   1. grayscale values 0..255 (the caller reads them off the drawing canvas);
//   2. invert if the background is light, judged from the median of the border pixels;
//   3. stretch the contrast: background -> 0, darkest stroke -> 1;
//   4. crop to the bounding box of the ink (pixels above 25 % of full contrast);
//   5. resize so the longer side is 20 pixels (a Lanczos filter in fixed-point integers);
//   6. paste into 28x28 with the center of mass at pixel (14, 14);
//   7. scale to [0, 1], pad to 32x32 and, if the network was trained so, standardize.

const INK_THRESHOLD = 0.25, BOX = 20, FIELD = 28, PRECISION_BITS = 22;

export class NoDigitError extends Error {}

// Python's round(): to the nearest integer, halves to the even one (round(2.5) == 2).
export function roundHalfEven(x) {
  const down = Math.floor(x), rest = x - down;
  if (rest > 0.5) return down + 1;
  if (rest < 0.5) return down;
  return down % 2 === 0 ? down : down + 1;
}

// round(p / q) for integers p and q > 0, halves to even, without rounding errors.
function roundRatio(p, q) {
  const down = Math.floor(p / q), rest = p - down * q;
  if (2 * rest > q || (2 * rest === q && down % 2 !== 0)) return down + 1;
  return down;
}

// NumPy's median: the middle value, or the mean of the two middle values.
function median(values) {
  const s = Float64Array.from(values).sort();
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// The Lanczos-3 kernel, sinc(x) sinc(x/3) on [-3, 3).
function sinc(x) {
  if (x === 0) return 1;
  x = x * Math.PI;
  return Math.sin(x) / x;
}
function lanczos3(x) {
  return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

// Fixed-point weights for resizing one axis from nIn to nOut pixels: for each output pixel
// o, the first input pixel it reads and the integer weights (units of 2^-22) of the inputs.
// Output pixel o is centered on input coordinate (o + 1/2) nIn / nOut; when shrinking, the
// kernel is stretched by the scale factor (anti-aliasing) and each row's weights sum to 1.
function resamplingWeights(nIn, nOut) {
  const scale = nIn / nOut, stretch = Math.max(scale, 1), support = 3 * stretch, inverse = 1 / stretch;
  const rows = [];
  for (let o = 0; o < nOut; o++) {
    const center = (o + 0.5) * scale;
    const first = Math.max(Math.trunc(center - support + 0.5), 0);
    const stop = Math.min(Math.trunc(center + support + 0.5), nIn);
    const w = [];
    for (let i = first; i < stop; i++) w.push(lanczos3((i - center + 0.5) * inverse));
    let total = 0;
    for (const v of w) total += v;                       // in order, as lenet_core does
    const fixed = w.map((v) => {
      const n = total !== 0 ? v / total : v;
      return Math.trunc(n * (1 << PRECISION_BITS) + (n >= 0 ? 0.5 : -0.5));
    });
    rows.push({ first, fixed });
  }
  return rows;
}

// A fixed-point sum back to a whole gray level: add one half, drop the fraction, clip to 0..255.
function toGrayLevel(acc) {
  const v = Math.floor((acc + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// lenet_core.digits.lanczos_resize: rows first, then columns; an axis that keeps its size is
// left alone. img: whole gray levels, row by row (h x w). All sums are exact integers.
export function lanczosResize(img, h, w, height, width) {
  let cur = img, curW = w;
  if (width !== w) {
    const rows = resamplingWeights(w, width), out = new Float64Array(h * width);
    for (let r = 0; r < h; r++)
      for (let o = 0; o < width; o++) {
        const { first, fixed } = rows[o];
        let acc = 0;
        for (let k = 0; k < fixed.length; k++) acc += cur[r * curW + first + k] * fixed[k];
        out[r * width + o] = toGrayLevel(acc);
      }
    cur = out;
    curW = width;
  }
  if (height !== h) {
    const rows = resamplingWeights(h, height), out = new Float64Array(height * curW);
    for (let o = 0; o < height; o++)
      for (let c = 0; c < curW; c++) {
        const { first, fixed } = rows[o];
        let acc = 0;
        for (let k = 0; k < fixed.length; k++) acc += cur[(first + k) * curW + c] * fixed[k];
        out[o * curW + c] = toGrayLevel(acc);
      }
    cur = out;
  }
  return cur;
}

// Steps 1-6 (lenet_core.digits.to_mnist_28). gray: width x height values 0..255, row by row.
// Returns a Float32Array(784), white digit on black in [0, 1]; throws NoDigitError if the
// image holds no digit (nearly one flat color).
export function toMnist28(gray, width, height) {
  if (width < 2 || height < 2) throw new NoDigitError(`the image is too small (${width}x${height} pixels)`);
  const n = width * height, g = new Float64Array(n);
  let top = -Infinity;
  for (let k = 0; k < n; k++) { g[k] = gray[k]; if (g[k] > top) top = g[k]; }
  if (top <= 1) for (let k = 0; k < n; k++) g[k] *= 255;   // lenet_core reads 0..1 images as [0, 1]
  const border = new Float64Array(2 * width + 2 * (height - 2));
  let b = 0;
  for (let j = 0; j < width; j++) { border[b++] = g[j]; border[b++] = g[(height - 1) * width + j]; }
  for (let i = 1; i < height - 1; i++) { border[b++] = g[i * width]; border[b++] = g[i * width + width - 1]; }
  if (median(border) > 127.5) {                          // light background: dark ink on paper
    for (let k = 0; k < n; k++) g[k] = 255 - g[k];
    for (let k = 0; k < border.length; k++) border[k] = 255 - border[k];
  }
  const background = median(border);
  let peak = -Infinity;
  for (let k = 0; k < n; k++) if (g[k] > peak) peak = g[k];
  if (peak - background < 16) throw new NoDigitError("no digit found: the drawing is (nearly) one flat color");
  const range = peak - background, ink = g;             // the contrast stretch, in place
  for (let k = 0; k < n; k++) ink[k] = Math.min(Math.max((g[k] - background) / range, 0), 1);

  let r0 = height, r1 = -1, c0 = width, c1 = -1;         // bounding box of the ink
  for (let i = 0; i < height; i++)
    for (let j = 0; j < width; j++)
      if (ink[i * width + j] > INK_THRESHOLD) {
        r0 = Math.min(r0, i); r1 = Math.max(r1, i); c0 = Math.min(c0, j); c1 = Math.max(c1, j);
      }
  const h = r1 - r0 + 1, w = c1 - c0 + 1;
  const crop = new Float64Array(h * w);
  for (let i = 0; i < h; i++)
    for (let j = 0; j < w; j++) crop[i * w + j] = roundHalfEven(ink[(r0 + i) * width + c0 + j] * 255);

  const scale = BOX / Math.max(h, w);
  const nh = Math.max(1, roundHalfEven(h * scale)), nw = Math.max(1, roundHalfEven(w * scale));
  const small = lanczosResize(crop, h, w, nh, nw);

  let total = 0, sumI = 0, sumJ = 0;                     // center of mass, in integers
  for (let i = 0; i < nh; i++)
    for (let j = 0; j < nw; j++) {
      const v = small[i * nw + j];
      total += v; sumI += v * i; sumJ += v * j;
    }
  if (total <= 0) throw new NoDigitError("no digit found");
  const half = FIELD / 2;
  let rowAt = roundRatio(half * total - sumI, total);   // round(14 - center row)
  let colAt = roundRatio(half * total - sumJ, total);
  rowAt = Math.min(Math.max(rowAt, 0), FIELD - nh);
  colAt = Math.min(Math.max(colAt, 0), FIELD - nw);
  const out = new Float32Array(FIELD * FIELD);
  for (let i = 0; i < nh; i++)
    for (let j = 0; j < nw; j++) out[(rowAt + i) * FIELD + colAt + j] = small[i * nw + j] / 255;
  return out;
}

// Step 7: the 28x28 digit padded by 2 zeros on every side, then standardized in float32 if the
// network expects it: x -> (x - mean) / std, as lenet_core.standardize computes it.
export function toLenetInput(d28, prep) {
  const out = new Float32Array(32 * 32);
  for (let i = 0; i < 28; i++)
    for (let j = 0; j < 28; j++) out[(i + 2) * 32 + j + 2] = d28[i * 28 + j];
  if (prep && prep.standardize) {
    const mean = Math.fround(prep.mean), std = Math.fround(prep.std);
    for (let k = 0; k < out.length; k++) out[k] = Math.fround(out[k] - mean) / std;
  }
  return out;
}
