// ort_check.mjs: runs an ONNX model exported by `lowbit export --format onnx` in ONNX Runtime
// (npm onnxruntime-node, installed into tests/onnx/node_modules by tools/setup.sh) on uint8
// images, and writes its logits and/or predicted classes. Used by tests/test_onnx.c and by
// experiments/deploy/onnx_agreement.sh. It computes nothing itself: ONNX Runtime runs the
// graph with graphOptimizationLevel 'basic', whose rewrites keep the numerics of the exported
// QuantizeLinear/DequantizeLinear pairs, int4 included ('extended' and 'all' refuse 4-bit
// graphs in ONNX Runtime 1.30; docs/FORMAT.md, "ONNX export").
//
// usage: node tests/onnx/ort_check.mjs MODEL.onnx IMAGES [options]
//   IMAGES              raw uint8 pixels, NCHW (needs --shape), or an IDX image file such as
//                       MNIST's t10k-images-idx3-ubyte(.gz) (shape from its header, C = 1)
//   --shape N,C,H,W     geometry of a raw IMAGES file
//   --logits FILE       write float32 little-endian logits, N x classes
//   --predictions FILE  write the argmax class of each image, one per line (first on ties)
//   --labels FILE       an IDX label file: also print the accuracy
//   --batch B           images per run                                     [1000]
//   --threads T         ONNX Runtime intra-op threads (0: its default)     [1]
// Exit status: 0 success, 1 failure, 3 onnxruntime-node is not installed (run tools/setup.sh).
import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { createRequire } from 'node:module';

function fail(msg, code = 1) {
  process.stderr.write(`ort_check: ${msg}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const a = { pos: [], batch: 1000, threads: 1 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (!k.startsWith('--')) { a.pos.push(k); continue; }
    if (i + 1 >= argv.length) fail(`${k} needs a value`);
    const v = argv[++i];
    if (k === '--shape') a.shape = v.split(',').map(Number);
    else if (k === '--logits') a.logits = v;
    else if (k === '--predictions') a.predictions = v;
    else if (k === '--labels') a.labels = v;
    else if (k === '--batch') a.batch = Number(v);
    else if (k === '--threads') a.threads = Number(v);
    else fail(`unknown option ${k}`);
  }
  if (a.pos.length !== 2) fail('usage: ort_check.mjs MODEL.onnx IMAGES [--shape N,C,H,W] ...');
  if (!(a.batch >= 1)) fail('--batch: expected >= 1');
  return a;
}

// An IDX file (big-endian header: 0, 0, type 0x08 = ubyte, n_dims; then the dims), gzip or not.
function readIdx(path, wantDims) {
  let buf = readFileSync(path);
  if (buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipSync(buf);
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0 || buf[2] !== 0x08 || buf[3] !== wantDims)
    fail(`${path}: not an IDX ubyte file with ${wantDims} dims`);
  const dims = [];
  for (let d = 0; d < wantDims; d++) dims.push(buf.readUInt32BE(4 + 4 * d));
  const off = 4 + 4 * wantDims, n = dims.reduce((p, x) => p * x, 1);
  if (buf.length !== off + n) fail(`${path}: ${buf.length} bytes, header says ${off + n}`);
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + off, n) };
}

function loadImages(path, shape) {
  const head = readFileSync(path).subarray(0, 4);
  const gz = head[0] === 0x1f && head[1] === 0x8b;
  const idx = gz || (head[0] === 0 && head[1] === 0 && head[2] === 8);
  if (idx && !shape) {
    const { dims, data } = readIdx(path, 3);
    return { N: dims[0], C: 1, H: dims[1], W: dims[2], data };
  }
  if (!shape || shape.length !== 4 || shape.some((x) => !(x >= 1)))
    fail('a raw IMAGES file needs --shape N,C,H,W');
  const data = new Uint8Array(readFileSync(path));
  const [N, C, H, W] = shape;
  if (data.length !== N * C * H * W)
    fail(`${path}: ${data.length} bytes, --shape says ${N * C * H * W}`);
  return { N, C, H, W, data };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = createRequire(import.meta.url)('onnxruntime-node');
  } catch (e) {
    fail('onnxruntime-node is not installed in tests/onnx/node_modules (run tools/setup.sh, '
         + `or ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix tests/onnx): ${e.message}`, 3);
  }
  const img = loadImages(a.pos[1], a.shape);
  const session = await ort.InferenceSession.create(a.pos[0], {
    graphOptimizationLevel: 'basic',
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const inName = session.inputNames[0], outName = session.outputNames[0];
  const per = img.C * img.H * img.W;
  let classes = 0, logits = null;
  const pred = new Int32Array(img.N);
  for (let i0 = 0; i0 < img.N; i0 += a.batch) {
    const n = Math.min(a.batch, img.N - i0);
    const pixels = img.data.slice(i0 * per, (i0 + n) * per);
    const x = new ort.Tensor('uint8', pixels, [n, img.C, img.H, img.W]);
    const y = (await session.run({ [inName]: x }))[outName];
    if (y.type !== 'float32' || y.dims.length !== 2 || y.dims[0] !== n)
      fail(`output ${outName}: ${y.type} [${y.dims}], expected float32 [${n}, classes]`);
    if (!logits) {
      classes = y.dims[1];
      logits = new Float32Array(img.N * classes);
    }
    logits.set(y.data, i0 * classes);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++)
        if (y.data[i * classes + c] > y.data[i * classes + best]) best = c;
      pred[i0 + i] = best;
    }
  }
  if (a.logits)
    writeFileSync(a.logits, Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
  if (a.predictions) writeFileSync(a.predictions, Array.from(pred).join('\n') + '\n');
  const version = ort.env.versions?.node ?? '?';
  let msg = `ort_check: ${a.pos[0]}: ${img.N} images, ${classes} classes`;
  msg += ` (onnxruntime-node ${version})`;
  if (a.labels) {
    const { dims, data } = readIdx(a.labels, 1);
    if (dims[0] !== img.N) fail(`${a.labels}: ${dims[0]} labels for ${img.N} images`);
    let correct = 0;
    for (let i = 0; i < img.N; i++) correct += pred[i] === data[i] ? 1 : 0;
    msg += `, accuracy ${(100 * correct / img.N).toFixed(2)}%`;
  }
  process.stderr.write(msg + '\n');
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
