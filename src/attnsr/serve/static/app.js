// attnsr serve: the page. No dependencies, no CDN: talks to this server's /v1 API only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], items: [], token: null, selected: null, nextId: 1, running: 0 };
const MAX_PARALLEL = 2; // uploads in flight from this page (the server queues the rest)
const POLL_MS = 300;

// ------------------------------------------------------------------ API
function headers() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (res.status === 401) {
    $("token-row").hidden = false;
    notice("This server needs an access token: enter it above and try again.");
  }
  return res;
}

async function problem(res) {
  try {
    const body = await res.json();
    return body.error ? body.error.message : `${res.status} ${res.statusText}`;
  } catch (_) {
    return `${res.status} ${res.statusText}`;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

// ------------------------------------------------------------------ models and settings
function modelLabel(m) {
  const kind = { real: "photos", bicubic: "clean images", none: "no model" }[m.degradation] || m.degradation;
  return `${m.aliases[0] || m.name} (x${m.scales.join("/")}, ${kind}, ${m.speed_class})`;
}

async function loadModels() {
  const res = await api("/v1/models");
  if (!res.ok) {
    $("model-help").textContent = `Cannot list models: ${await problem(res)}`;
    return;
  }
  state.models = (await res.json()).models;
  const select = $("model");
  select.replaceChildren(new Option("Default for the scale", ""));
  for (const m of state.models) select.append(new Option(modelLabel(m), m.name));
  $("model-help").textContent = "Photos: the real-world models; clean downscales: the others.";
  updateScales();
}

function selectedModel() {
  const name = $("model").value;
  if (name) return state.models.find((m) => m.name === name);
  const scale = Number($("scale").value || 4);
  return state.models.find((m) => m.default_for.includes(scale));
}

function updateScales() {
  const name = $("model").value;
  const model = state.models.find((m) => m.name === name);
  const scales = model ? model.scales : [...new Set(state.models.flatMap((m) => m.default_for))].sort();
  const keep = Number($("scale").value);
  $("scale").replaceChildren(...scales.map((s) => new Option(`×${s}`, String(s))));
  $("scale").value = String(scales.includes(keep) ? keep : scales.includes(4) ? 4 : scales[0]);
  updateDenoise();
}

function updateDenoise() {
  const model = selectedModel();
  const can = Boolean(model && model.denoise);
  $("denoise").disabled = !can;
  $("denoise-help").textContent = can
    ? "0 keeps grain and texture; 1 removes noise and JPEG blocks."
    : "Not available for this model (it needs a clean and a real-world version).";
}

function settings() {
  const form = new FormData();
  if ($("model").value) form.append("model", $("model").value);
  if ($("scale").value) form.append("scale", $("scale").value);
  if (!$("denoise").disabled) form.append("denoise", $("denoise").value);
  form.append("format", $("format").value);
  form.append("mode", "async");
  return form;
}

// ------------------------------------------------------------------ the list
function addFiles(files) {
  for (const file of files) {
    const item = { id: state.nextId++, file, status: "ready", beforeUrl: URL.createObjectURL(file) };
    item.li = renderItem(item);
    state.items.push(item);
    $("items").append(item.li);
    const probe = new Image();
    probe.onload = () => { item.li.querySelector(".item-size").textContent = `${probe.naturalWidth}×${probe.naturalHeight}`; };
    probe.src = item.beforeUrl;
  }
  refreshButtons();
}

function renderItem(item) {
  const li = document.createElement("li");
  li.className = "item";
  li.innerHTML = `<div class="item-head"><span class="item-name"></span><span class="item-size muted small"></span></div>
    <progress max="1" value="0"></progress>
    <p class="status" role="status">Ready</p>
    <div class="actions">
      <button type="button" class="show" disabled>Compare</button>
      <a class="button download" aria-disabled="true">Download</a>
      <button type="button" class="remove">Remove</button>
    </div>`;
  li.querySelector(".item-name").textContent = item.file.name;
  li.querySelector("progress").setAttribute("aria-label", `Progress of ${item.file.name}`);
  li.querySelector(".show").setAttribute("aria-label", `Compare ${item.file.name}`);
  li.querySelector(".download").setAttribute("aria-label", `Download the result of ${item.file.name}`);
  li.querySelector(".remove").setAttribute("aria-label", `Remove ${item.file.name}`);
  li.querySelector(".show").addEventListener("click", () => show(item));
  li.querySelector(".remove").addEventListener("click", () => removeItem(item));
  return li;
}

function setStatus(item, status, text, fraction) {
  item.status = status;
  item.li.classList.toggle("done", status === "done");
  item.li.classList.toggle("failed", status === "failed");
  item.li.querySelector(".status").textContent = text;
  if (fraction !== undefined) item.li.querySelector("progress").value = fraction;
  refreshButtons();
}

function removeItem(item) {
  item.cancelled = true;
  if (item.jobId) api(`/v1/jobs/${item.jobId}`, { method: "DELETE" }).catch(() => {});
  item.li.remove();
  state.items = state.items.filter((i) => i !== item);
  URL.revokeObjectURL(item.beforeUrl);
  if (item.afterUrl) URL.revokeObjectURL(item.afterUrl);
  if (state.selected === item) { state.selected = null; $("compare").hidden = true; }
  refreshButtons();
}

function refreshButtons() {
  const ready = state.items.some((i) => i.status === "ready");
  $("start").disabled = !ready;
  $("download-all").disabled = !state.items.some((i) => i.status === "done");
  $("clear").disabled = state.items.length === 0;
  $("empty").hidden = state.items.length > 0;
}

// ------------------------------------------------------------------ running
function etaText(job) {
  const p = job.progress;
  if (job.status === "queued") return `Waiting for the server (position ${job.queue_position})`;
  const tiles = p.tiles_total ? `tile ${p.tiles_done} of ${p.tiles_total}` : "starting";
  if (job.eta_s === null || job.eta_s === undefined) return `Upscaling: ${tiles}, estimating time left`;
  const eta = job.eta_s < 1 ? "under a second" : `about ${Math.ceil(job.eta_s)} s`;
  return `Upscaling: ${tiles}, ${eta} left`;
}

async function submit(item) {
  for (;;) {
    const res = await api("/v1/upscale", { method: "POST", body: item.form });
    if (res.status !== 429 && res.status !== 503) return res;
    const wait = Number(res.headers.get("Retry-After") || 2);
    setStatus(item, "running", `Server busy, retrying in ${wait} s`, 0);
    await sleep(wait * 1000);
    if (item.cancelled) return null;
  }
}

async function run(item) {
  item.form = settings();
  item.form.append("image", item.file, item.file.name);
  setStatus(item, "running", "Uploading", 0);
  const res = await submit(item);
  if (!res) return;
  if (!res.ok) { setStatus(item, "failed", await problem(res), 0); return; }
  let job = await res.json();
  item.jobId = job.id;
  while (!["done", "error", "cancelled"].includes(job.status) && !item.cancelled) {
    setStatus(item, "running", etaText(job), job.progress.fraction);
    await sleep(POLL_MS);
    const poll = await api(`/v1/jobs/${job.id}`);
    if (!poll.ok) { setStatus(item, "failed", await problem(poll), 0); return; }
    job = await poll.json();
  }
  if (item.cancelled) return;
  if (job.status !== "done") { setStatus(item, "failed", job.error ? job.error.message : "Cancelled", 0); return; }
  await fetchResult(item, job);
}

async function fetchResult(item, job) {
  const res = await api(job.result_url);
  if (!res.ok) { setStatus(item, "failed", await problem(res), 0); return; }
  item.blob = await res.blob();
  item.afterUrl = URL.createObjectURL(item.blob);
  item.resultName = job.result_filename;
  item.outSize = `${job.output.width}×${job.output.height}`;
  api(`/v1/jobs/${job.id}`, { method: "DELETE" }).catch(() => {}); // the page keeps it now
  const link = item.li.querySelector(".download");
  link.href = item.afterUrl;
  link.download = item.resultName;
  link.removeAttribute("aria-disabled");
  item.li.querySelector(".show").disabled = false;
  setStatus(item, "done", `Done: ${item.outSize}, ×${job.scale} with ${job.model}`, 1);
  if (!state.selected) show(item);
}

async function pump() {
  while (state.running < MAX_PARALLEL) {
    const item = state.items.find((i) => i.status === "queued-here");
    if (!item) return;
    state.running += 1;
    item.status = "running";
    run(item).catch((err) => setStatus(item, "failed", `Failed: ${err.message}`, 0))
      .finally(() => { state.running -= 1; pump(); });
  }
}

function start(event) {
  event.preventDefault();
  notice("");
  for (const item of state.items) {
    if (item.status === "ready") setStatus(item, "queued-here", "Waiting to upload", 0);
  }
  pump();
}

// ------------------------------------------------------------------ comparison viewer
const view = { zoom: 1, x: 0, y: 0, split: 50 };
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

function show(item) {
  state.selected = item;
  for (const i of state.items) i.li.classList.toggle("selected", i === item);
  $("compare").hidden = false;
  $("compare-name").textContent = `${item.file.name} → ${item.resultName} (${item.outSize})`;
  $("after").onload = () => {
    const { naturalWidth: w, naturalHeight: h } = $("after");
    $("viewer").style.aspectRatio = `${w} / ${h}`;
    $("viewer").style.maxWidth = `calc(75vh * ${w / h})`;
    resetView();
  };
  $("before").src = item.beforeUrl;
  $("after").src = item.afterUrl;
  $("compare-download").href = item.afterUrl;
  $("compare-download").download = item.resultName;
}

function applyView() {
  const viewer = $("viewer");
  const w = viewer.clientWidth, h = viewer.clientHeight;
  view.zoom = clamp(view.zoom, 1, 16);
  view.x = clamp(view.x, w - w * view.zoom, 0);
  view.y = clamp(view.y, h - h * view.zoom, 0);
  $("stage").style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  // the split line stays where it is on screen; in image coordinates it moves with zoom
  const at = ((view.split / 100) * w - view.x) / view.zoom;
  const percent = clamp((at / Math.max(w, 1)) * 100, 0, 100);
  $("after").style.clipPath = `inset(0 0 0 ${percent.toFixed(3)}%)`;
  $("divider").style.left = `${view.split}%`;
  $("split").value = String(Math.round(view.split));
  $("split").setAttribute("aria-valuetext", `${Math.round(view.split)}% before, ${100 - Math.round(view.split)}% after`);
  $("zoom").value = String(view.zoom);
  $("zoom-value").textContent = `${view.zoom.toFixed(2).replace(/\.?0+$/, "")}×`;
}

function zoomAt(factor, px, py) {
  const old = view.zoom;
  view.zoom = clamp(old * factor, 1, 16);
  view.x = px - ((px - view.x) * view.zoom) / old;
  view.y = py - ((py - view.y) * view.zoom) / old;
  applyView();
}

function resetView() {
  Object.assign(view, { zoom: 1, x: 0, y: 0 });
  applyView();
}

function viewerPointer() {
  const viewer = $("viewer");
  const pointers = new Map();
  let mode = null, last = null, pinch = 0;
  viewer.addEventListener("pointerdown", (e) => {
    viewer.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, e);
    mode = e.target.closest("#divider") ? "split" : "pan";
    last = e;
    viewer.classList.add("dragging");
  });
  viewer.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId)) return;
    pointers.set(e.pointerId, e);
    const rect = viewer.getBoundingClientRect();
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const d = Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY);
      if (pinch) zoomAt(d / pinch, (a.clientX + b.clientX) / 2 - rect.left, (a.clientY + b.clientY) / 2 - rect.top);
      pinch = d;
    } else if (mode === "split") {
      view.split = clamp(((e.clientX - rect.left) / rect.width) * 100, 0, 100);
      applyView();
    } else if (last) {
      view.x += e.clientX - last.clientX;
      view.y += e.clientY - last.clientY;
      applyView();
    }
    last = e;
  });
  const end = (e) => {
    pointers.delete(e.pointerId);
    pinch = 0;
    if (!pointers.size) { mode = null; last = null; viewer.classList.remove("dragging"); }
  };
  viewer.addEventListener("pointerup", end);
  viewer.addEventListener("pointercancel", end);
  viewer.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = viewer.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });
}

function viewerKeys(e) {
  const w = $("viewer").clientWidth, h = $("viewer").clientHeight, step = 40;
  const keys = {
    "+": () => zoomAt(1.25, w / 2, h / 2), "=": () => zoomAt(1.25, w / 2, h / 2),
    "-": () => zoomAt(0.8, w / 2, h / 2), "0": resetView,
    ArrowLeft: () => { view.x += step; applyView(); }, ArrowRight: () => { view.x -= step; applyView(); },
    ArrowUp: () => { view.y += step; applyView(); }, ArrowDown: () => { view.y -= step; applyView(); },
  };
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
}

// ------------------------------------------------------------------ zip of all results
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function uniqueNames(names) {
  const seen = new Map();
  return names.map((name) => {
    const n = (seen.get(name) || 0) + 1;
    seen.set(name, n);
    return n === 1 ? name : name.replace(/(\.[^.]*)?$/, ` (${n})$1`);
  });
}

// A "stored" (uncompressed: images are compressed already) zip archive of the entries.
async function makeZip(entries) {
  const parts = [], central = [];
  let offset = 0;
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  for (const { name, blob } of entries) {
    const data = new Uint8Array(await blob.arrayBuffer());
    const nameBytes = new TextEncoder().encode(name);
    const crc = crc32(data);
    const head = new DataView(new ArrayBuffer(30));
    [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [8, 0, 2], [10, time, 2], [12, date, 2],
      [14, crc, 4], [18, data.length, 4], [22, data.length, 4], [26, nameBytes.length, 2], [28, 0, 2]]
      .forEach(([at, v, n]) => (n === 4 ? head.setUint32(at, v, true) : head.setUint16(at, v, true)));
    const entry = new DataView(new ArrayBuffer(46));
    [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [10, 0, 2], [12, time, 2], [14, date, 2],
      [16, crc, 4], [20, data.length, 4], [24, data.length, 4], [28, nameBytes.length, 2], [30, 0, 2],
      [32, 0, 2], [34, 0, 2], [36, 0, 2], [38, 0, 4], [42, offset, 4]]
      .forEach(([at, v, n]) => (n === 4 ? entry.setUint32(at, v, true) : entry.setUint16(at, v, true)));
    parts.push(head, nameBytes, data);
    central.push(entry, nameBytes);
    offset += 30 + nameBytes.length + data.length;
  }
  const size = central.reduce((sum, p) => sum + p.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, size, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: "application/zip" });
}

async function downloadAll() {
  const done = state.items.filter((i) => i.status === "done");
  const names = uniqueNames(done.map((i) => i.resultName));
  const zip = await makeZip(done.map((i, k) => ({ name: names[k], blob: i.blob })));
  const a = document.createElement("a");
  a.href = URL.createObjectURL(zip);
  a.download = "attnsr-results.zip";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

// ------------------------------------------------------------------ wiring
function wire() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("attnsr-token", fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem("attnsr-token");
  $("token").addEventListener("change", () => {
    state.token = $("token").value.trim() || null;
    if (state.token) sessionStorage.setItem("attnsr-token", state.token);
    notice("");
    loadModels();
  });
  $("files").addEventListener("change", () => { addFiles($("files").files); $("files").value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles([...e.dataTransfer.files].filter((f) => f.type.startsWith("image/") || !f.type));
  });
  $("model").addEventListener("change", updateScales);
  $("scale").addEventListener("change", updateDenoise);
  $("denoise").addEventListener("input", () => { $("denoise-value").textContent = $("denoise").value; });
  $("settings").addEventListener("submit", start);
  $("download-all").addEventListener("click", downloadAll);
  $("clear").addEventListener("click", () => [...state.items].forEach(removeItem));
  $("split").addEventListener("input", () => { view.split = Number($("split").value); applyView(); });
  $("zoom").addEventListener("input", () => {
    const v = $("viewer");
    zoomAt(Number($("zoom").value) / view.zoom, v.clientWidth / 2, v.clientHeight / 2);
  });
  $("zoom-reset").addEventListener("click", resetView);
  $("viewer").addEventListener("keydown", viewerKeys);
  window.addEventListener("resize", applyView);
  viewerPointer();
  refreshButtons();
  loadModels();
}

document.addEventListener("DOMContentLoaded", wire);
