// The imgsearch page: everything it shows comes from the JSON API (/api/openapi.json). The
// view lives in the URL (?id=…&k=…&min=…, ?view=random&seed=…, ?view=dups&threshold=…,
// ?view=index), so back, forward, reload and shared links work; an upload's results live in
// the history entry's state (an upload has no id to put in a URL).
"use strict";

const DEFAULT_K = 12;
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function params() {
  return new URLSearchParams(location.search);
}

function kParam(p) {
  const k = parseInt(p.get("k") || "", 10);
  return k > 0 ? Math.min(k, 1000) : DEFAULT_K;
}

// A min score from the URL: a cosine, so anything outside (-1, 1] is no bound at all.
function minParam(p) {
  const min = parseFloat(p.get("min") || "");
  return Number.isFinite(min) && min > -1 && min <= 1 ? min : null;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function status(text) {
  $("status").textContent = text;
}

async function getJson(url, init) {
  const response = await fetch(url, init);
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`${url}: HTTP ${response.status}`);
  }
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

// The file name with its folder's (photos/a/IMG_1.jpg: "a/IMG_1.jpg"), so that files of one
// name in different folders tell apart; the whole path is the title.
function shortPath(path) {
  return path.split("/").slice(-2).join("/");
}

function thumb(id, side = 256) {
  return `/api/images/${id}/thumbnail?side=${side}`;
}

// Go to a new view: a new history entry, then draw it.
function go(search, state = null) {
  history.pushState(state, "", search ? `/?${search}` : "/");
  render();
}

function searchUrl(id, k, min) {
  const p = new URLSearchParams({ id, k: String(k) });
  if (min !== null) p.set("min", min.toFixed(2));
  return p.toString();
}

function resultCard(hit, extraClass = "") {
  const img = el("img", { src: thumb(hit.id), alt: hit.path, loading: "lazy" });
  img.addEventListener("click", () => go(searchUrl(hit.id, kParam(params()), minParam(params()))));
  return el(
    "div",
    { class: `result ${extraClass}`.trim(), "data-id": hit.id, "data-path": hit.path },
    img,
    el("span", { class: "score" }, hit.score.toFixed(4)),
    el("span", { class: "name", title: hit.path }, shortPath(hit.path)),
    el("a", { class: "original", href: `/api/images/${hit.id}/original`, target: "_blank", rel: "noopener" }, "original"),
  );
}

function clear() {
  showError("");
  status("");
  $("grid").replaceChildren();
  $("query").replaceChildren();
  $("query").hidden = true;
  $("more").hidden = true;
}

function drawResults(answer, k, queryImage) {
  const { results } = answer;
  const query = $("query");
  query.replaceChildren(
    queryImage,
    el("div", {}, el("div", {}, "neighbours of"), el("strong", { class: "query-path" }, answer.query)),
  );
  query.hidden = false;
  $("grid").replaceChildren(...results.map((hit) => resultCard(hit)));
  status(`${results.length} results · generation ${answer.generation}`);
  $("more").hidden = results.length < k;
}

async function renderSearch(p) {
  const id = p.get("id");
  const k = kParam(p);
  const min = minParam(p);
  setSlider(min);
  if (history.state && history.state.upload) {
    const answer = history.state.upload;
    const img = el("img", { src: history.state.preview || "", alt: answer.query });
    drawResults(answer, k, img);
    return;
  }
  if (p.get("view") === "upload") {
    status("Upload results are not kept across reloads: drop the image again.");
    return;
  }
  if (!id) {
    status("Drop an image, or open Random to browse.");
    return;
  }
  const q = new URLSearchParams({ k: String(k) });
  if (min !== null) q.set("min_score", String(min));
  status("searching…");
  const answer = await getJson(`/api/images/${encodeURIComponent(id)}/neighbours?${q}`);
  drawResults(answer, k, el("img", { src: thumb(id), alt: answer.query }));
}

async function renderRandom(p) {
  const seed = p.get("seed") || "0";
  status("drawing rows…");
  const answer = await getJson(`/api/random?rows=8&k=8&seed=${encodeURIComponent(seed)}`);
  const next = el("button", { type: "button", id: "another" }, "another draw");
  next.addEventListener("click", () => go(`view=random&seed=${Number(seed) + 1}`));
  const rows = answer.rows.map((row) => {
    const first = { id: row.query_id, path: row.query, score: 1 };
    const cards = [resultCard(first, "first"), ...row.results.map((h) => resultCard(h))];
    return el("div", { class: "row" }, ...cards);
  });
  $("grid").replaceChildren(next, ...rows);
  $("grid").className = "";
  status(`seed ${seed}: each row an image (framed) and its nearest neighbours`);
}

async function renderDups(p) {
  const threshold = p.get("threshold") || "0.85";
  status("grouping near-duplicates (the first time takes a while on a big index)…");
  const answer = await getJson(`/api/dups?threshold=${encodeURIComponent(threshold)}`);
  const groups = answer.groups.map((g) => {
    const keep = { id: g.keep_id, path: g.keep, score: 1 };
    const apart = el("button", { class: "apart", type: "button" }, "not duplicates");
    const group = el(
      "div",
      { class: "group", "data-group": String(g.id) },
      el("h3", {}, `group ${g.id}: keep ${shortPath(g.keep)}, ${g.duplicates.length} cop${g.duplicates.length === 1 ? "y" : "ies"} `, apart),
      el("div", { class: "row" }, resultCard(keep, "first"), ...g.duplicates.map((d) => resultCard(d))),
    );
    // The decision is recorded beside the index (as `imgsearch dups --ignore` records it):
    // later runs and this page leave these images apart.
    apart.onclick = async () => {
      apart.disabled = true;
      try {
        const ids = [g.keep_id, ...g.duplicates.map((d) => d.id)];
        const said = await getJson("/api/dups/ignore", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ids }),
        });
        group.remove();
        showError("");
        status(`group ${g.id} recorded as not duplicates (${said.ignored_new} new pairs, ${said.ignored_total} in all)`);
      } catch (e) {
        apart.disabled = false;
        showError(e.message);
      }
    };
    return group;
  });
  const help = el(
    "p",
    {},
    "To act on these groups: ",
    el("code", {}, `imgsearch dups --threshold ${threshold} --move DEST`),
    " moves the copies (undo with --undo), ",
    el("code", {}, "--hardlink"),
    " links byte-identical ones. Candidate pairs here passed the same pixel check as the command's; copies turned a quarter, mirrored or inside a border, caption bar or screenshot are found by the command, not here. \u201cnot duplicates\u201d remembers a group as wrong, for this page and the command.",
  );
  $("grid").replaceChildren(help, ...groups);
  $("grid").className = "";
  status(`${answer.groups.length} groups at cosine ≥ ${threshold} and copy score ≥ ${answer.copy_score} · generation ${answer.generation}`);
}

async function renderIndex() {
  const s = await getJson("/api/stats");
  const when = s.committed_unix ? new Date(s.committed_unix * 1000).toLocaleString() : "unknown";
  const rows = [
    ["images", s.images],
    ["folders", s.folders.length ? s.folders.join(", ") : "(not recorded)"],
    ["model", `${s.model.name} (${s.model.id})`],
    ["last update", `${when} · generation ${s.generation}, ${s.segments} segments, ${s.dim} dimensions`],
    ["thumbnail cache", `${s.thumbnails.dir} (${(s.thumbnails.bytes / 1e6).toFixed(1)} MB)`],
  ];
  const list = el("dl", { class: "stats" });
  for (const [term, value] of rows) list.append(el("dt", {}, term), el("dd", {}, value));
  $("grid").replaceChildren(list);
  $("grid").className = "";
}

function setSlider(min) {
  $("min").value = min === null ? "-1" : String(min);
  $("min-value").textContent = min === null ? "off" : min.toFixed(2);
}

let drawing = 0;
async function render() {
  const p = params();
  const view = p.get("view") || "search";
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === (view === "upload" ? "search" : view));
  }
  const mine = ++drawing;
  clear();
  $("grid").className = "grid";
  try {
    if (view === "random") await renderRandom(p);
    else if (view === "dups") await renderDups(p);
    else if (view === "index") await renderIndex();
    else await renderSearch(p);
  } catch (e) {
    if (mine === drawing) {
      status("");
      showError(e.message);
    }
  }
}

async function upload(file) {
  if (!file) return;
  const p = params();
  const k = kParam(p);
  const min = minParam(p);
  const q = new URLSearchParams({ k: String(k) });
  if (min !== null) q.set("min_score", String(min));
  const form = new FormData();
  form.append("image", file, file.name);
  clear();
  status(`searching by ${file.name}…`);
  try {
    const answer = await getJson(`/api/search?${q}`, { method: "POST", body: form });
    const preview = URL.createObjectURL(file);
    const search = new URLSearchParams({ view: "upload", k: String(k) });
    if (min !== null) search.set("min", min.toFixed(2));
    history.pushState({ upload: answer, preview }, "", `/?${search}`);
    render();
  } catch (e) {
    status("");
    showError(`${file.name}: ${e.message}`);
  }
}

function setup() {
  $("file").addEventListener("change", (e) => upload(e.target.files[0]));
  const drop = $("drop");
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    upload(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData ? e.clipboardData.files : [])][0];
    if (file) upload(file);
  });
  $("min").addEventListener("input", () => {
    const v = parseFloat($("min").value);
    $("min-value").textContent = v > -1 ? v.toFixed(2) : "off";
  });
  $("min").addEventListener("change", () => {
    const p = params();
    const v = parseFloat($("min").value);
    if (v > -1) p.set("min", v.toFixed(2));
    else p.delete("min");
    history.replaceState(history.state, "", `/?${p}`);
    render();
  });
  $("more").addEventListener("click", () => {
    const p = params();
    p.set("k", String(kParam(p) + DEFAULT_K));
    if (history.state && history.state.upload) {
      status("Drop the image again to see more of an upload's neighbours.");
      return;
    }
    go(p.toString());
  });
  for (const a of document.querySelectorAll("nav a, a.brand")) {
    a.addEventListener("click", (e) => {
      e.preventDefault();
      go(new URL(a.href).search.slice(1));
    });
  }
  window.addEventListener("popstate", render);
  render();
}

setup();
