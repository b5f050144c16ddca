// onnx_agreement.mjs: compares two prediction files (one class per line, as written by
// `lowbit eval --predictions` and tests/onnx/ort_check.mjs --predictions) with each other and
// with an IDX label file; prints one JSON line: images, agreement, accuracy of each, and the
// indices of the images on which they disagree. Helper of experiments/deploy/onnx_agreement.sh.
// usage: node onnx_agreement.mjs FRAMEWORK.txt ONNX.txt LABELS.idx1-ubyte[.gz]
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

const [fwPath, ortPath, labelPath] = process.argv.slice(2);
if (!labelPath) {
  process.stderr.write('usage: node onnx_agreement.mjs FRAMEWORK.txt ONNX.txt LABELS\n');
  process.exit(2);
}
const preds = (p) => readFileSync(p, 'utf8').trim().split('\n').map(Number);
const fw = preds(fwPath), ort = preds(ortPath);
let lab = readFileSync(labelPath);
if (lab[0] === 0x1f && lab[1] === 0x8b) lab = gunzipSync(lab);
if (lab.readUInt32BE(0) !== 0x801) throw new Error(`${labelPath}: not an IDX label file`);
const n = lab.readUInt32BE(4);
if (fw.length !== n || ort.length !== n)
  throw new Error(`${n} labels, ${fw.length} framework and ${ort.length} ONNX predictions`);
let agree = 0, fwOk = 0, ortOk = 0;
const differ = [];
for (let i = 0; i < n; i++) {
  const y = lab[8 + i];
  if (fw[i] === ort[i]) agree++;
  else differ.push(i);
  fwOk += fw[i] === y ? 1 : 0;
  ortOk += ort[i] === y ? 1 : 0;
}
console.log(JSON.stringify({ images: n, agreement: agree / n, framework_acc: fwOk / n,
                             onnx_acc: ortOk / n, differ }));
