#!/usr/bin/env node
// edgekit's web driver: runs one harness job (job.json in --job DIR) and writes DIR/result.json.
//   --mode node     the harness in this Node.js process (onnxruntime-web / TF.js for Node, no browser)
//   --mode browser  the system Chromium, driven by playwright-core, on edgekit's loopback server (--url)
// Exit 0 when result.json was written (its "ok" tells whether the job ran), 2 otherwise.
'use strict';
const fs = require('fs');
const path = require('path');

function argv() {
  const out = {};
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) out[a[i].replace(/^--/, '')] = a[i + 1];
  return out;
}

const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];

async function inNode(opts, job) {
  const mod = (name) => require(path.join(opts.modules, name));
  const libs = {};
  if (job.runtime === 'onnxruntime-web') libs.ort = mod('onnxruntime-web');
  else {
    libs.tf = mod('@tensorflow/tfjs');
    if (job.runtime === 'tfjs-wasm') libs.wasm = mod('@tensorflow/tfjs-backend-wasm');
  }
  fs.mkdirSync(path.join(opts.job, 'out'), {recursive: true});
  const io = {
    performance: require('perf_hooks').performance,
    read: async (p) => new Uint8Array(fs.readFileSync(path.join(opts.job, p))),
    write: async (p, bytes) => fs.writeFileSync(path.join(opts.job, p), bytes),
  };
  const res = await require('./harness.js').runJob(libs, io, job);
  res.engine = 'Node.js ' + process.version;
  return res;
}

async function inBrowser(opts) {
  const {chromium} = require(path.join(opts.modules, 'playwright-core'));
  const timeout = Number(opts.timeout || 600000);
  let browser;
  try {
    browser = await chromium.launch({executablePath: opts.chromium, headless: true, args: FLAGS, timeout});
  } catch (e) {
    return {ok: false, stage: 'browser start', error: String(e.message || e).split('\n').slice(0, 8).join('\n')};
  }
  const consoleLines = [];
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error' && consoleLines.length < 20) consoleLines.push(m.text()); });
    page.on('pageerror', (e) => { if (consoleLines.length < 20) consoleLines.push(String(e)); });
    page.setDefaultTimeout(timeout);
    await page.goto(opts.url, {timeout});
    const res = await page.evaluate(() => window.edgekitResult);
    res.engine = 'Chromium ' + browser.version() + ' (headless)';
    if (!res.ok && consoleLines.length) res.console = consoleLines;
    return res;
  } catch (e) {
    return {ok: false, stage: 'browser', error: String(e.message || e).split('\n').slice(0, 8).join('\n'),
            console: consoleLines};
  } finally {
    await browser.close().catch(() => {});
  }
}

(async () => {
  const opts = argv();
  let res;
  try {
    const job = JSON.parse(fs.readFileSync(path.join(opts.job, 'job.json'), 'utf8'));
    res = opts.mode === 'browser' ? await inBrowser(opts) : await inNode(opts, job);
  } catch (e) {
    res = {ok: false, stage: 'driver', error: String((e && e.stack) || e).slice(0, 2000)};
  }
  fs.writeFileSync(path.join(opts.job, 'result.json'), JSON.stringify(res));
  process.exit(0);
})().catch((e) => { process.stderr.write(String(e) + '\n'); process.exit(2); });
