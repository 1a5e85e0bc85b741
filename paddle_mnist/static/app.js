// The draw-a-digit page: strokes on a canvas (Pointer Events: mouse, touch, pen), sent as the strokes
// themselves (JSON) to POST /api/predict shortly after the pen lifts or while drawing; the server groups
// them into digits by where they lie, draws each again the way MNIST's digits look (20 px box, a pen in
// proportion, centre of mass) and answers with each digit's probabilities, box and the 28x28 image the
// model saw. A photo goes as an image, and is shown on the pad with the boxes of the digits read.
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
let photoImage = null;       // ... decoded, drawn on the pad
let photoFit = null;         // ... its placement there: {scale, left, top}
let boxes = [];              // the digits read: [x0, y0, x1, y1] as the answer gives them (onPad places them)
let shownDigits = [];        // the digits of the last answer, for the chips

const STROKE = 20;           // px on the 280 px pad: ~2 px of a 28 px MNIST digit after the 20 px box fit

function redraw() {
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  if (photoImage) {
    const { scale, left, top } = photoFit;
    ctx.drawImage(photoImage, left, top, photoImage.naturalWidth * scale, photoImage.naturalHeight * scale);
  }
  ctx.strokeStyle = "#000000";
  ctx.lineWidth = STROKE;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const stroke of strokes) {
    ctx.beginPath();
    stroke.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (stroke.length === 1) ctx.lineTo(stroke[0][0] + 0.1, stroke[0][1]);
    ctx.stroke();
  }
  ctx.strokeStyle = "#2a6df4";
  ctx.lineWidth = 2;
  const placed = boxes.map(onPad);
  for (const [x0, y0, x1, y1] of placed) ctx.strokeRect(x0 - 4, y0 - 4, x1 - x0 + 8, y1 - y0 + 8);
  pad.dataset.boxes = JSON.stringify(placed.map((box) => box.map(Math.round)));  // for people's tools and tests
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
  lastPhoto = photoImage = null;
  boxes = [];
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
  lastPhoto = photoImage = null;
  boxes = [];
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
  setStatus("no digit found: draw one, or a number, or drop a photo");
  renderBars(null);
  document.getElementById("digits").replaceChildren();
  document.getElementById("seen").getContext("2d").clearRect(0, 0, 28, 28);
  boxes = [];
  redraw();
}

// A mark the model's calibration refuses ("not a digit") shows as "?", with the digit it is closest to.
const markText = (d) => (d.digit === null ? "?" : classes[d.digit]);
const likeliest = (d) => (d.digit === null ? d.closest : d.digit);  // the digit read, or the closest to a refused mark

function show(result) {
  shownDigits = result.digits;
  const text = shownDigits.map(markText).join("");
  const many = shownDigits.length > 1;
  const refused = shownDigits.filter((d) => d.digit === null).length;
  document.getElementById("digit").textContent = result.reason ? "?" : text;
  document.getElementById("confidence").textContent = result.reason
    ? ""
    : `${(100 * result.probability).toFixed(1)} %` + (many ? " that all are right" : "");
  const cut = result.left_out ? ` (${result.left_out} more marks not read)` : "";
  const closest = shownDigits.map((d) => classes[d.closest]).join("");
  let status;
  if (result.reason) status = `${many ? "these are not digits" : "this is not a digit"}: the closest would be ${closest}`;
  else if (many) status = `the model reads the number ${text}: ${shownDigits.length} marks` +
    (refused ? `, ${refused} of them not a digit (?)` : "");
  else status = `the model reads a ${text}`;
  setStatus(status + cut);
  boxes = shownDigits.map((d) => d.box);
  redraw();
  document.getElementById("digits").replaceChildren(...shownDigits.map((d, k) => {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = d.digit === null
      ? `? · not a digit (closest ${classes[d.closest]})`
      : `${classes[d.digit]} · ${(100 * d.probability).toFixed(0)} %`;
    chip.addEventListener("click", () => select(k));
    return chip;
  }));
  select(0);
}

// One digit of the answer in detail: its ten probabilities, and the image the model saw (or its heat map).
function select(k) {
  const d = shownDigits[k];
  document.querySelectorAll("#digits .chip").forEach((chip, i) => chip.classList.toggle("selected", i === k));
  const scores = Array(classes.length).fill(0);
  for (const [c, p] of d.topk) scores[c] = p;
  renderBars(scores, likeliest(d));
  const seen = new Image();
  seen.onload = () => {
    const c = document.getElementById("seen").getContext("2d");
    c.imageSmoothingEnabled = false;
    c.drawImage(seen, 0, 0);
  };
  // with the toggle on: the model input under a heat map of where the evidence for the digit read lies
  const heat = explainBox.checked && d.explanation;
  const canvas = document.getElementById("seen");
  canvas.dataset.showing = heat ? "explanation" : "input";
  canvas.dataset.digit = k;
  document.getElementById("seen-caption").textContent = heat
    ? `where the model looked for its ${classes[likeliest(d)]} (Grad-CAM)`
    : "what the model saw (28×28)";
  seen.src = "data:image/png;base64," + (heat ? d.explanation : d.model_input);
}

// A box from the answer (pad pixels for a drawing, the photo's own pixels for a photo) on the pad.
function onPad([x0, y0, x1, y1]) {
  if (!lastPhoto) return [x0, y0, x1, y1];
  if (!photoImage) return [0, 0, 0, 0];  // the photo is still loading: its boxes come with it
  const { scale, left, top } = photoFit;
  return [left + x0 * scale, top + y0 * scale, left + x1 * scale, top + y1 * scale];
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
  boxes = [];
  photoImage = null;
  const image = new Image();
  image.onload = () => {  // shown on the pad, whole, so that the digits' boxes can be drawn over it
    const scale = Math.min(pad.width / image.naturalWidth, pad.height / image.naturalHeight);
    photoFit = { scale, left: (pad.width - image.naturalWidth * scale) / 2, top: (pad.height - image.naturalHeight * scale) / 2 };
    if (lastPhoto !== file) return;  // another photo or a drawing came since
    photoImage = image;
    redraw();
  };
  image.src = URL.createObjectURL(file);
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
