// edgekit's web harness: one job = load one model in one runtime, run every batch (outputs kept),
// then warm-up and timed runs of one batch, timed with performance.now(). The same code runs in
// the page (browser) and in Node.js (driver.js --mode node); `io` gives it bytes either way.
// Tensors cross as raw little-endian binary files, never as JSON lists of numbers.
(function (root) {
  'use strict';
  const TYPED = {
    float32: Float32Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array,
    int8: Int8Array, bool: Uint8Array, int16: Int16Array, uint16: Uint16Array, float64: Float64Array,
  };

  function typed(dtype, bytes) {
    const T = TYPED[dtype];
    if (!T) throw new Error('unsupported input dtype ' + dtype);
    const copy = bytes.slice().buffer;  // aligned, owned
    return new T(copy);
  }

  function bytesOf(arr) {
    return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  }

  async function openOrt(ort, io, job) {
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    if (io.ortWasmPaths) ort.env.wasm.wasmPaths = io.ortWasmPaths;
    ort.env.logLevel = 'error';
    const session = await ort.InferenceSession.create(await io.read(job.model), {
      executionProviders: ['wasm'], graphOptimizationLevel: 'all'});
    const outputNames = session.outputNames;
    return {
      version: ort.env.versions ? (ort.env.versions.web || ort.env.versions.common) : '?',
      outputs: outputNames,
      run: async (feeds) => {
        const tensors = {};
        for (const f of feeds) {
          const dtype = f.dtype === 'bool' ? 'bool' : f.dtype;
          tensors[f.name] = new ort.Tensor(dtype, typed(f.dtype, f.bytes), f.shape);
        }
        const out = await session.run(tensors);
        return outputNames.map((n) => ({name: n, dtype: out[n].type, shape: Array.from(out[n].dims),
                                       data: out[n].data}));
      },
      close: async () => { await session.release(); },
    };
  }

  async function openTfjs(tf, wasm, io, job, backend) {
    if (backend === 'wasm') {
      if (!wasm) throw new Error('the TF.js wasm backend is not loaded');
      if (io.tfjsWasmPaths) wasm.setWasmPaths(io.tfjsWasmPaths);
      if (wasm.setThreadsCount) wasm.setThreadsCount(1);
    }
    if (!(await tf.setBackend(backend))) throw new Error('TF.js backend ' + backend + ' did not initialize');
    await tf.ready();
    const json = JSON.parse(new TextDecoder().decode(await io.read(job.model)));
    const dir = job.model.includes('/') ? job.model.slice(0, job.model.lastIndexOf('/') + 1) : '';
    const specs = [];
    const parts = [];
    for (const group of json.weightsManifest || []) {
      for (const p of group.paths) parts.push(await io.read(dir + p));
      for (const w of group.weights) specs.push(w);
    }
    const size = parts.reduce((a, p) => a + p.byteLength, 0);
    const weightData = new Uint8Array(size);
    let at = 0;
    for (const p of parts) { weightData.set(p, at); at += p.byteLength; }
    const model = await tf.loadGraphModel(tf.io.fromMemory({
      modelTopology: json.modelTopology, weightSpecs: specs, weightData: weightData.buffer,
      format: json.format, generatedBy: json.generatedBy, convertedBy: json.convertedBy,
      signature: json.signature, userDefinedMetadata: json.userDefinedMetadata}));
    const outputNames = job.outputs && job.outputs.length ? job.outputs : model.outputNodes;
    return {
      version: tf.version.tfjs + ' (' + tf.getBackend() + ')',
      outputs: outputNames,
      run: async (feeds) => {
        const inputs = {};
        for (const f of feeds) {
          const dtype = f.dtype === 'int64' ? 'int32' : (f.dtype === 'float32' || f.dtype === 'int32' ||
            f.dtype === 'bool' ? f.dtype : 'float32');
          let data = typed(f.dtype, f.bytes);
          if (f.dtype === 'int64') data = Int32Array.from(data, (v) => Number(v));
          inputs[f.name] = tf.tensor(data, f.shape, dtype);
        }
        let out = await model.executeAsync(inputs, outputNames);
        if (!Array.isArray(out)) out = [out];
        const result = [];
        for (let i = 0; i < out.length; i++) {
          result.push({name: outputNames[i], dtype: out[i].dtype, shape: out[i].shape, data: await out[i].data()});
        }
        tf.dispose(out);
        tf.dispose(Object.values(inputs));
        return result;
      },
      close: async () => { model.dispose(); },
    };
  }

  async function loadFeeds(io, batch) {
    const feeds = [];
    for (const f of batch) feeds.push({name: f.name, dtype: f.dtype, shape: f.shape, bytes: await io.read(f.file)});
    return feeds;
  }

  // job: {runtime, model, outputs?, batches: [[{name, dtype, shape, file}]], bench: {batch, warmup, iterations}}
  async function runJob(libs, io, job) {
    const now = () => (root.performance || io.performance).now();
    const stage = {name: 'load'};
    try {
      const t0 = now();
      let m;
      if (job.runtime === 'onnxruntime-web') m = await openOrt(libs.ort, io, job);
      else if (job.runtime === 'tfjs-wasm') m = await openTfjs(libs.tf, libs.wasm, io, job, 'wasm');
      else if (job.runtime === 'tfjs-cpu') m = await openTfjs(libs.tf, libs.wasm, io, job, 'cpu');
      else throw new Error('unknown runtime ' + job.runtime);
      const loadMs = now() - t0;
      stage.name = 'infer';
      const outputs = [];
      for (let b = 0; b < job.batches.length; b++) {
        const res = await m.run(await loadFeeds(io, job.batches[b]));
        for (let k = 0; k < res.length; k++) {
          const file = 'out/b' + b + '_o' + k + '.bin';
          let data = res[k].data;
          if (typeof data[0] === 'bigint' || data instanceof BigInt64Array) data = BigInt64Array.from(data);
          await io.write(file, bytesOf(data));
          outputs.push({batch: b, name: res[k].name, dtype: res[k].dtype, shape: res[k].shape, file});
        }
      }
      stage.name = 'timing';
      const samples = [];
      let first = null;
      if (job.bench && job.bench.iterations > 0) {
        const feeds = await loadFeeds(io, job.batches[job.bench.batch || 0]);
        for (let i = 0; i < job.bench.warmup; i++) {
          const t = now();
          await m.run(feeds);
          if (first === null) first = now() - t;
        }
        for (let i = 0; i < job.bench.iterations; i++) {
          const t = now();
          await m.run(feeds);
          samples.push(now() - t);
        }
      }
      await m.close();
      return {ok: true, version: m.version, output_names: m.outputs, load_ms: loadMs, outputs,
              samples_ms: samples, first_inference_ms: first};
    } catch (e) {
      return {ok: false, stage: stage.name, error: String((e && e.message) || e).slice(0, 2000)};
    }
  }

  root.edgekitHarness = {runJob};
  if (typeof module !== 'undefined' && module.exports) module.exports = {runJob};
})(typeof globalThis !== 'undefined' ? globalThis : this);
