// The draw-a-digit page: strokes on a canvas (Pointer Events: mouse, touch, pen), sent as the strokes
// themselves (JSON) to POST /api/predict shortly after the pen lifts or while drawing; the server draws
// them again the way MNIST's digits look (20 px box, a pen in proportion, centre of mass) and answers
// with the classes' probabilities and the 28x28 image the model saw. A photo goes as an image.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const strokes = [];          // each stroke: a list of [x, y] in canvas pixels
let drawing = null;
let classes = [...Array(10).keys()].map(String);
let pending = null;          // debounce timer
let generation = 0;          // answers to older drawings are ignored

const explainBox = document.getElementById("explain");
let lastPhoto = null;        // the photo on show, sent again when the heat-map toggle changes

const STROKE = 20;           // px on the 280 px pad: ~2 px of a 28 px MNIST digit after the 20 px box fit

function redraw() {
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000000";
  ctx.lineWidth = STROKE;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const stroke of strokes) {
    ctx.beginPath();
    stroke.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (stroke.length === 1) ctx.lineTo(stroke[0][0] + 0.1, stroke[0][1]);
    ctx.stroke();
  }
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = [point(event)];
  strokes.push(drawing);
  lastPhoto = null;
  redraw();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  event.preventDefault();
  drawing.push(point(event));
  redraw();
  schedule(150);
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = null;
    schedule(30);
  });
}

function clearPad() {
  strokes.length = 0;
  lastPhoto = null;
  redraw();
  schedule(0);
}
function undo() {
  strokes.pop();
  redraw();
  schedule(0);
}
document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("undo").addEventListener("click", undo);
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement) return;
  if (event.key === "Escape" || event.key === "Delete") { event.preventDefault(); clearPad(); }
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { event.preventDefault(); undo(); }
});

function schedule(delay) {
  clearTimeout(pending);
  pending = setTimeout(sendDrawing, delay);
}

function sendDrawing() {
  if (!strokes.length) { showBlank(); return; }
  const points = strokes.map((stroke) => stroke.map(([x, y]) => [Math.round(x * 10) / 10, Math.round(y * 10) / 10]));
  send(JSON.stringify({ strokes: points, width: pad.width, height: pad.height }), "application/json");
}

async function send(body, type) {
  const mine = ++generation;
  setStatus("thinking…");
  let answer, status;
  try {
    const url = "/api/predict?topk=10" + (explainBox.checked ? "&explain=1" : "");
    const response = await fetch(url, { method: "POST", headers: { "Content-Type": type }, body });
    status = response.status;
    answer = await response.json();
  } catch (error) {
    if (mine === generation) setStatus(`the server did not answer (${error.message})`, true);
    return;
  }
  if (mine !== generation) return;
  if (status !== 200) {
    if (status === 422 && /no digit found/.test(answer.error || "")) showBlank();
    else setStatus(answer.error || `the server answered ${status}`, true);
    return;
  }
  const result = answer.results[0];
  if (result.error) { setStatus(result.error, true); return; }
  show(result);
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function showBlank() {
  ++generation;
  document.getElementById("digit").textContent = "–";
  document.getElementById("confidence").textContent = "";
  setStatus("no digit found: draw one, or drop a photo");
  renderBars(null);
  document.getElementById("seen").getContext("2d").clearRect(0, 0, 28, 28);
}

function show(result) {
  document.getElementById("digit").textContent = classes[result.digit];
  document.getElementById("confidence").textContent = `${(100 * result.probability).toFixed(1)} %`;
  setStatus(`the model reads a ${classes[result.digit]}`);
  const scores = Array(classes.length).fill(0);
  for (const [k, p] of result.topk) scores[k] = p;
  renderBars(scores, result.digit);
  const seen = new Image();
  seen.onload = () => {
    const c = document.getElementById("seen").getContext("2d");
    c.imageSmoothingEnabled = false;
    c.drawImage(seen, 0, 0);
  };
  // with the toggle on: the model input under a heat map of where the evidence for the digit read lies
  const heat = explainBox.checked && result.explanation;
  document.getElementById("seen").dataset.showing = heat ? "explanation" : "input";
  document.getElementById("seen-caption").textContent = heat
    ? `where the model looked for its ${classes[result.digit]} (Grad-CAM)`
    : "what the model saw (28×28)";
  seen.src = "data:image/png;base64," + (heat ? result.explanation : result.model_input);
}

function renderBars(scores, top) {
  const list = document.getElementById("bars");
  list.replaceChildren(...classes.map((name, k) => {
    const item = document.createElement("li");
    const value = scores ? scores[k] : 0;
    item.className = k === top ? "top" : "";
    item.dataset.score = value;
    item.innerHTML = '<span class="name"></span><span class="bar"><span class="fill"></span></span><span class="value"></span>';
    item.querySelector(".name").textContent = name;
    item.querySelector(".fill").style.width = `${100 * value}%`;
    item.querySelector(".value").textContent = scores ? `${(100 * value).toFixed(1)}%` : "";
    return item;
  }));
}

// Photos: the file chooser, or a drop anywhere on the page.
document.getElementById("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) sendPhoto(file);
  event.target.value = "";
});
document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) sendPhoto(file);
});
explainBox.addEventListener("change", () => {
  if (strokes.length) sendDrawing();
  else if (lastPhoto) sendPhoto(lastPhoto);
});

function sendPhoto(file) {
  lastPhoto = file;
  strokes.length = 0;
  redraw();
  send(file, file.type || "application/octet-stream");
}

async function loadModel() {
  try {
    const info = await (await fetch("/api/model")).json();
    classes = info.classes;
    const accuracy = info.eval_acc == null ? "" : `, ${(100 * info.eval_acc).toFixed(2)} % on the eval split`;
    document.getElementById("model-info").textContent = `${info.model} · ${info.loss} · ${info.dataset}${accuracy}`;
  } catch (error) {
    document.getElementById("model-info").textContent = `model info unavailable (${error.message})`;
  }
  renderBars(null);
}

redraw();
loadModel();
