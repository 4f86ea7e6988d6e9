// StoryCore review page: the board as a live contact sheet.
//
// Vanilla ES2020, no build step, nothing from a CDN. Every value the server sends (storyboard
// text, record fields, error paragraphs) reaches the DOM through textContent or a safe
// attribute (value, title, data-*); images are only ever /thumb/, /media/ or /preview/ plus an
// encodeURIComponent'ed id, so nothing in a project can make the page load anything else.
// The server's CSP (script-src 'self'; style-src 'self') forbids inline script and style:
// styles are classes, or element.style set from here (CSSOM, which the policy allows).
"use strict";

(() => {
  const PAGE = 200; // cards per /api/board request
  const MAX_TEXT = 10000; // comment length the project keeps
  const EDIT_TEXT = ["title", "subject", "camera", "lighting", "color", "style"];
  const EDIT_TECH = [
    ["steps", "int"],
    ["cfg_scale", "float"],
    ["seed", "int"],
    ["sampler", "text"],
    ["negative_prompt", "text"],
  ];

  const state = {
    csrf: "",
    token: "",
    total: 0,
    order: [], // shot ids of the loaded cards, board order
    cards: new Map(), // shot_id -> {data, el, parts}
    selected: new Set(),
    progress: { running: false, panels: {} },
    render: { state: "idle", profile: null, shots: [] },
    loading: false,
    generation: 0,
    firstShown: false,
    focus: -1,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  const str = (v) => (typeof v === "string" ? v : "");
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const thumbUrl = (id) => "/thumb/" + encodeURIComponent(id);
  const mediaUrl = (id) => "/media/" + encodeURIComponent(id);
  const previewUrl = (key, n) => "/preview/" + encodeURIComponent(key) + "?n=" + (n | 0);

  function message(text, isError) {
    const box = $("message");
    box.textContent = text || "";
    box.classList.toggle("error", Boolean(isError));
  }

  // ---- HTTP -------------------------------------------------------------------------------

  async function getJSON(url) {
    const reply = await fetch(url, { headers: { Accept: "application/json" } });
    const data = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new Error(str(data.error) || `${url}: HTTP ${reply.status}`);
    return data;
  }

  async function post(url, body) {
    let reply;
    try {
      reply = await fetch(url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-StoryCore-CSRF": state.csrf,
        },
        body: JSON.stringify(body || {}),
      });
    } catch (err) {
      return { ok: false, status: 0, data: {}, error: "The review server did not answer." };
    }
    const data = await reply.json().catch(() => ({}));
    const error = reply.ok ? "" : str(data.error) || `HTTP ${reply.status}`;
    return { ok: reply.ok, status: reply.status, data, error };
  }

  const shotUrl = (shot, action) => `/api/shots/${encodeURIComponent(shot)}/${action}`;

  // ---- cards ------------------------------------------------------------------------------

  function paramsText(card) {
    const t = card.technical || {};
    const a = card.active;
    const bits = [];
    const seed = a && num(a.seed) !== null ? a.seed : t.seed;
    if (seed !== undefined && seed !== null) bits.push(`seed ${seed}`);
    if (t.steps !== undefined) bits.push(`${t.steps} steps`);
    if (t.cfg_scale !== undefined) bits.push(`cfg ${t.cfg_scale}`);
    if (t.sampler !== undefined) bits.push(String(t.sampler));
    if (t.scheduler !== undefined) bits.push(String(t.scheduler));
    if (a && a.width && a.height) bits.push(`${a.width}×${a.height}`);
    else if (t.resolution !== undefined) bits.push(String(t.resolution));
    if (t.denoise !== undefined) bits.push(`denoise ${t.denoise}`);
    const checkpoint = (a && a.checkpoint) || t.checkpoint;
    if (checkpoint) bits.push(String(checkpoint));
    if (num(card.duration_seconds) !== null) bits.push(`${card.duration_seconds} s`);
    return bits.join(" · ");
  }

  function buildCard(shot) {
    const root = el("article", "card");
    root.tabIndex = 0;
    root.setAttribute("role", "gridcell");
    root.dataset.shot = shot;

    const figure = el("div", "figure");
    const thumb = el("img", "active-thumb");
    thumb.loading = "lazy";
    thumb.decoding = "async";
    thumb.alt = "";
    const empty = el("div", "empty", "no take yet");
    const badges = el("div", "badges");
    const number = el("span", "num");
    figure.append(thumb, empty, badges, number);

    const body = el("div", "body");
    const head = el("div", "head");
    const select = el("input", "select");
    select.type = "checkbox";
    select.title = "Select for render";
    const title = el("h2", "title");
    const status = el("span", "status");
    head.append(select, title, status);
    const meta = el("div", "head");
    const shotId = el("span", "shot-id");
    const profile = el("span", "profile");
    meta.append(shotId, profile);
    const prompt = el("p", "prompt");
    const params = el("p", "params");
    const cardError = el("p", "card-error");
    const takes = el("div", "takes");
    takes.setAttribute("role", "group");
    const actions = el("div", "actions");
    const approve = el("button", "approve", "Approve");
    approve.type = "button";
    const reject = el("button", "reject", "Reject");
    reject.type = "button";
    const edit = el("button", "edit", "Edit");
    edit.type = "button";
    actions.append(approve, reject, edit);
    const comment = el("textarea", "comment");
    comment.rows = 1;
    comment.maxLength = MAX_TEXT;
    comment.placeholder = "Comment…";
    comment.title = "A comment on this shot: Enter saves, Shift+Enter starts a new line";
    comment.setAttribute("aria-label", "Comment");
    const error = el("p", "error");
    error.setAttribute("role", "alert");
    body.append(head, meta, prompt, params, cardError, takes, actions, comment, error);
    root.append(figure, body);

    const parts = {
      root, figure, thumb, empty, badges, number, select, title, status, shotId, profile,
      prompt, params, cardError, takes, approve, reject, edit, comment, error,
      form: null, preview: null, progress: null,
    };
    wireCard(shot, parts);
    return parts;
  }

  function badge(parts, className, text) {
    parts.badges.append(el("span", "badge " + className, text));
  }

  function fillCard(entry) {
    const card = entry.data;
    const p = entry.parts;
    const a = card.active;
    const root = p.root;
    root.dataset.status = str(card.status);
    root.dataset.needsTake = card.needs_take ? "true" : "false";
    root.dataset.profile = str(card.profile);
    root.dataset.active = a ? str(a.asset_id) : "";
    root.classList.toggle("is-approved", Boolean(a && a.approved));
    root.classList.toggle("is-rejected", Boolean(a && a.rejected));
    root.classList.toggle("placeholder", Boolean(a && a.placeholder));

    const src = a && a.path ? thumbUrl(a.asset_id) : "";
    if (src) {
      if (p.thumb.getAttribute("src") !== src) p.thumb.setAttribute("src", src);
      p.thumb.hidden = false;
      p.thumb.alt = `${str(card.title)} (take ${a.take})`;
      p.empty.hidden = true;
    } else {
      p.thumb.removeAttribute("src");
      p.thumb.hidden = true;
      p.empty.textContent = a ? "image missing" : "no take yet";
      p.empty.hidden = false;
    }
    p.badges.replaceChildren();
    if (card.profile) badge(p, "profile", card.profile);
    if (a && a.approved) badge(p, "approved", "approved");
    if (a && a.rejected) badge(p, "rejected", "rejected");
    if (a && a.placeholder) badge(p, "placeholder", "placeholder");
    if (card.needs_take) badge(p, "needs-take", "needs take");
    p.number.textContent = `#${(card.index | 0) + 1}`;

    p.title.textContent = str(card.title) || str(card.shot_id);
    p.title.title = str(card.description) || str(card.title);
    p.status.textContent = str(card.status);
    p.status.className = "status " + str(card.status).replace(/[^a-z_-]/gi, "");
    p.shotId.textContent = str(card.shot_id);
    p.profile.textContent = card.profile ? `profile ${card.profile}` : "";
    p.prompt.textContent = str(card.prompt);
    p.prompt.title = str(card.prompt);
    const params = paramsText(card);
    p.params.textContent = params;
    p.params.title = params;
    p.cardError.textContent = str(card.error);
    p.cardError.hidden = !card.error;
    p.select.checked = state.selected.has(card.shot_id);
    root.classList.toggle("selected", p.select.checked);

    p.approve.textContent = a && a.approved ? "Approved" : "Approve";
    p.approve.classList.toggle("on", Boolean(a && a.approved));
    p.approve.disabled = !a;
    p.approve.setAttribute("aria-pressed", a && a.approved ? "true" : "false");
    p.reject.disabled = !a || a.rejected;

    if (document.activeElement !== p.comment && p.comment.dataset.dirty !== "1") {
      p.comment.value = str(card.comment);
    }

    const takes = Array.isArray(card.takes) ? card.takes : [];
    const buttons = takes.map((t, i) => {
      const b = el("button", "take");
      b.type = "button";
      b.dataset.asset = str(t.asset_id);
      b.classList.toggle("active", Boolean(t.active));
      b.classList.toggle("approved", Boolean(t.approved));
      b.classList.toggle("rejected", Boolean(t.rejected));
      const flags = [t.profile, t.approved && "approved", t.rejected && "rejected",
        t.placeholder && "placeholder"].filter(Boolean).join(", ");
      b.title = `take ${t.take} · render ${t.render}${t.seed !== null ? ` · seed ${t.seed}` : ""}` +
        (flags ? ` (${flags})` : "") + (i < 9 ? ` · key ${i + 1}` : "");
      if (t.path) {
        const img = el("img");
        img.loading = "lazy";
        img.decoding = "async";
        img.alt = "";
        img.setAttribute("src", thumbUrl(t.asset_id));
        b.append(img);
      }
      b.append(el("span", "tn", String(i + 1)));
      return b;
    });
    p.takes.replaceChildren(...buttons);
    applyProgress(entry);
  }

  // ---- per-card actions -------------------------------------------------------------------

  function entryOf(shot) {
    return state.cards.get(shot);
  }

  async function cardAction(shot, action, body) {
    const entry = entryOf(shot);
    if (!entry) return false;
    entry.parts.error.textContent = "";
    const reply = await post(shotUrl(shot, action), body);
    if (!reply.ok) {
      entry.parts.error.textContent = reply.error;
      return false;
    }
    if (reply.data.card) applyCard(reply.data.card);
    return reply;
  }

  function pick(shot, assetId) {
    return cardAction(shot, "pick", { asset_id: assetId });
  }

  function toggleApprove(shot) {
    const entry = entryOf(shot);
    const a = entry && entry.data.active;
    if (!a) return Promise.resolve(false);
    return cardAction(shot, "approve", { asset_id: a.asset_id, approved: !a.approved });
  }

  function reject(shot) {
    const entry = entryOf(shot);
    const a = entry && entry.data.active;
    if (!a) return Promise.resolve(false);
    return cardAction(shot, "reject", { asset_id: a.asset_id });
  }

  async function saveComment(shot) {
    const entry = entryOf(shot);
    if (!entry) return;
    const box = entry.parts.comment;
    const text = box.value.slice(0, MAX_TEXT);
    if (text === str(entry.data.comment)) {
      box.dataset.dirty = "";
      return;
    }
    const reply = await cardAction(shot, "comment", { text });
    if (reply) {
      box.dataset.dirty = "";
      box.classList.add("saved");
      setTimeout(() => box.classList.remove("saved"), 1200);
    }
  }

  function wireCard(shot, p) {
    p.thumb.addEventListener("click", () => openViewer(shot));
    p.root.addEventListener("focus", () => {
      state.focus = state.order.indexOf(shot);
    });
    p.root.addEventListener("click", (ev) => {
      if (ev.target === p.root || ev.target.closest(".figure")) p.root.focus();
    });
    p.select.addEventListener("change", () => {
      if (p.select.checked) state.selected.add(shot);
      else state.selected.delete(shot);
      p.root.classList.toggle("selected", p.select.checked);
      updateCounts();
    });
    p.takes.addEventListener("click", (ev) => {
      const button = ev.target.closest("button.take");
      if (button && !button.classList.contains("active")) pick(shot, button.dataset.asset);
    });
    p.approve.addEventListener("click", () => toggleApprove(shot));
    p.reject.addEventListener("click", () => reject(shot));
    p.edit.addEventListener("click", () => toggleEdit(shot));
    p.comment.addEventListener("input", () => {
      p.comment.dataset.dirty = "1";
    });
    p.comment.addEventListener("blur", () => saveComment(shot));
    p.comment.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        saveComment(shot);
      } else if (ev.key === "Escape") {
        p.comment.value = str(entryOf(shot).data.comment);
        p.comment.dataset.dirty = "";
        p.root.focus();
      }
    });
  }

  // ---- edit form --------------------------------------------------------------------------

  function currentValues(card) {
    const m = card.modules || {};
    const t = card.technical || {};
    const values = { title: str(card.title) };
    for (const key of EDIT_TEXT.slice(1)) values[key] = str(m[key]);
    for (const [key] of EDIT_TECH) values[key] = t[key] === undefined ? "" : String(t[key]);
    return values;
  }

  function toggleEdit(shot) {
    const entry = entryOf(shot);
    if (!entry) return;
    const p = entry.parts;
    if (p.form) {
      p.form.remove();
      p.form = null;
      p.edit.setAttribute("aria-expanded", "false");
      return;
    }
    const form = el("form", "edit-form");
    form.noValidate = true;
    const values = currentValues(entry.data);
    const field = (name, multiline) => {
      const id = `edit-${name}-${Math.random().toString(36).slice(2, 9)}`;
      const label = el("label", "", name.replace("_", " "));
      label.htmlFor = id;
      const input = el(multiline ? "textarea" : "input");
      if (!multiline) input.type = "text";
      input.name = name;
      input.id = id;
      input.value = values[name];
      input.dataset.original = values[name];
      form.append(label, input);
    };
    for (const key of EDIT_TEXT) field(key, key === "subject");
    for (const [key] of EDIT_TECH) field(key, key === "negative_prompt");
    const row = el("div", "row-actions");
    const save = el("button", "save", "Save");
    save.type = "submit";
    const cancel = el("button", "cancel-edit", "Cancel");
    cancel.type = "button";
    row.append(cancel, save);
    form.append(row);
    cancel.addEventListener("click", () => toggleEdit(shot));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      submitEdit(shot, form, save);
    });
    form.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.stopPropagation();
        toggleEdit(shot);
        p.root.focus();
      }
    });
    p.error.before(form);
    p.form = form;
    p.edit.setAttribute("aria-expanded", "true");
    form.querySelector("[name=subject]").focus();
  }

  function collectChanges(form) {
    const changes = {};
    const modules = {};
    const technical = {};
    const problems = [];
    for (const input of form.querySelectorAll("[name]")) {
      const name = input.name;
      const value = input.value;
      if (value === input.dataset.original) continue;
      const tech = EDIT_TECH.find(([key]) => key === name);
      if (!tech) {
        if (name === "title") changes.title = value;
        else modules[name] = value;
        continue;
      }
      const text = value.trim();
      if (text === "") {
        technical[name] = null; // removes the key: the shot falls back to the defaults
      } else if (tech[1] === "int") {
        if (!/^-?\d+$/.test(text)) problems.push(`${name} must be a whole number, not "${text}"`);
        else technical[name] = Number.parseInt(text, 10);
      } else if (tech[1] === "float") {
        const n = Number(text);
        if (!Number.isFinite(n)) problems.push(`${name} must be a number, not "${text}"`);
        else technical[name] = n;
      } else {
        technical[name] = value;
      }
    }
    if (Object.keys(technical).length) modules.technical = technical;
    if (Object.keys(modules).length) changes.prompt_modules = modules;
    return { changes, problems };
  }

  async function submitEdit(shot, form, save) {
    const entry = entryOf(shot);
    if (!entry) return;
    const { changes, problems } = collectChanges(form);
    entry.parts.error.textContent = "";
    if (problems.length) {
      entry.parts.error.textContent = problems.join("; ") + ".";
      return;
    }
    if (!Object.keys(changes).length) {
      toggleEdit(shot);
      return;
    }
    save.disabled = true;
    const reply = await cardAction(shot, "edit", { changes, token: state.token });
    save.disabled = false;
    if (!reply) return; // the error paragraph is in the card; the form stays open
    if (typeof reply.data.token === "string") state.token = reply.data.token;
    if (entry.parts.form === form) toggleEdit(shot);
  }

  // ---- live progress ----------------------------------------------------------------------

  function panelFor(shot) {
    const panels = state.progress.panels || {};
    let best = null;
    for (const [key, panel] of Object.entries(panels)) {
      if (!panel || typeof panel !== "object") continue;
      const id = typeof panel.shot_id === "string" ? panel.shot_id : key.split("#")[0];
      if (id !== shot) continue;
      const score = (panel.state === "running" ? 2 : 1) + (num(panel.fraction) || 0);
      if (!best || score > best.score) best = { key, panel, score };
    }
    return best;
  }

  function applyProgress(entry) {
    const p = entry.parts;
    const found = state.progress.running !== false ? panelFor(entry.data.shot_id) : null;
    p.root.classList.toggle("running", Boolean(found));
    if (!found) {
      if (p.progress) p.progress.remove();
      if (p.preview) p.preview.remove();
      p.progress = null;
      p.preview = null;
      p.figure.classList.remove("previewing");
      return;
    }
    const { key, panel } = found;
    if (!p.progress) {
      p.progress = el("div", "progress");
      p.progress.append(el("div", "bar"), el("span", "label"));
      p.progress.setAttribute("role", "progressbar");
      p.progress.setAttribute("aria-valuemin", "0");
      p.progress.setAttribute("aria-valuemax", "100");
      p.figure.append(p.progress);
    }
    const fraction = Math.max(0, Math.min(1, num(panel.fraction) || 0));
    p.progress.firstChild.style.width = `${(fraction * 100).toFixed(1)}%`;
    p.progress.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
    const take = num(panel.take);
    const steps = num(panel.steps);
    const label = panel.state === "running"
      ? `take ${take || 1}: ${steps ? `step ${num(panel.step) || 0}/${steps}` :
        `${Math.round(fraction * 100)}%`}`
      : `take ${take || 1}: queued`;
    p.progress.lastChild.textContent = label;
    const count = num(panel.preview_count) || 0;
    if (panel.preview && count > 0) {
      if (!p.preview) {
        p.preview = el("img", "preview");
        p.preview.alt = "live preview";
        p.preview.decoding = "async";
        p.figure.insertBefore(p.preview, p.badges);
      }
      const src = previewUrl(key, count);
      if (p.preview.getAttribute("src") !== src) p.preview.setAttribute("src", src);
      p.figure.classList.add("previewing");
    } else if (p.preview) {
      p.preview.remove();
      p.preview = null;
      p.figure.classList.remove("previewing");
    }
  }

  function onProgress(msg) {
    state.progress = {
      running: msg.running !== false,
      panels: msg.panels && typeof msg.panels === "object" ? msg.panels : {},
    };
    for (const entry of state.cards.values()) applyProgress(entry);
    const done = num(msg.done);
    const total = num(msg.total);
    $("render-progress").textContent = msg.running && total !== null
      ? `${done || 0}/${total} done${msg.profile ? ` · ${msg.profile}` : ""}`
      : "";
  }

  // ---- toolbar ----------------------------------------------------------------------------

  function setRender(render) {
    const r = render && typeof render === "object" ? render : {};
    const s = ["idle", "running", "stopping"].includes(r.state) ? r.state : "idle";
    state.render = { state: s, profile: r.profile || null, shots: r.shots || [] };
    const label = $("render-state");
    label.textContent = s;
    label.className = s;
    const idle = s === "idle";
    $("render-rejected").disabled = !idle;
    $("render-selected").disabled = !idle || state.selected.size === 0;
    $("stop").disabled = s !== "running";
    $("cancel").disabled = idle;
    if (r.summary !== undefined && r.summary !== null) message(summaryText(r.summary), false);
    if (idle) $("render-progress").textContent = "";
  }

  function summaryText(summary) {
    if (typeof summary === "string") return summary;
    if (typeof summary !== "object") return String(summary);
    return "Last render: " + Object.entries(summary)
      .filter(([, v]) => typeof v !== "object")
      .map(([k, v]) => `${k} ${v}`).join(", ");
  }

  function updateCounts() {
    let approved = 0;
    let needs = 0;
    let rejected = 0;
    for (const { data } of state.cards.values()) {
      if (data.active && data.active.approved) approved += 1;
      if (data.active && data.active.rejected) rejected += 1;
      if (data.needs_take) needs += 1;
    }
    const loaded = state.cards.size;
    const of = loaded < state.total ? ` (of ${loaded} loaded)` : "";
    $("counts").textContent = `${state.total} shots · ${approved} approved · ${rejected} ` +
      `rejected · ${needs} need a take${of} · ${state.selected.size} selected`;
    $("render-selected").disabled = state.render.state !== "idle" || state.selected.size === 0;
  }

  async function startRender(rejected) {
    const n = Number.parseInt($("new-takes").value, 10);
    const body = {
      shots: rejected ? [] : state.order.filter((s) => state.selected.has(s)),
      profile: $("profile").value || null,
      new_takes: Number.isFinite(n) && n > 0 ? n : 1,
      rejected,
    };
    if (!rejected && !body.shots.length) return;
    message("");
    const reply = await post("/api/render", body);
    if (!reply.ok) message(reply.error, true);
    else setRender({ state: "running", profile: body.profile, shots: body.shots });
  }

  async function renderControl(which) {
    const reply = await post(`/api/render/${which}`, {});
    if (!reply.ok) message(reply.error, true);
  }

  function wireToolbar() {
    $("render-selected").addEventListener("click", () => startRender(false));
    $("render-rejected").addEventListener("click", () => startRender(true));
    $("stop").addEventListener("click", () => renderControl("stop"));
    $("cancel").addEventListener("click", () => renderControl("cancel"));
    $("select-none").addEventListener("click", () => {
      state.selected.clear();
      for (const entry of state.cards.values()) fillSelect(entry);
      updateCounts();
    });
    $("select-needing").addEventListener("click", () => {
      for (const entry of state.cards.values()) {
        if (entry.data.needs_take) state.selected.add(entry.data.shot_id);
        fillSelect(entry);
      }
      updateCounts();
    });
  }

  function fillSelect(entry) {
    const on = state.selected.has(entry.data.shot_id);
    entry.parts.select.checked = on;
    entry.parts.root.classList.toggle("selected", on);
  }

  function fillProfiles(profiles, current) {
    const select = $("profile");
    const names = Array.isArray(profiles) ? profiles.filter((p) => typeof p === "string") : [];
    const options = [el("option", "", "(settings)")];
    options[0].value = "";
    for (const name of names) {
      const option = el("option", "", name);
      option.value = name;
      options.push(option);
    }
    select.replaceChildren(...options);
    const preferred = names.includes(current) ? current : names.includes("draft") ? "draft" : "";
    select.value = preferred;
  }

  // ---- board: paging, live updates --------------------------------------------------------

  function applyCard(card) {
    if (!card || typeof card.shot_id !== "string") return;
    const entry = state.cards.get(card.shot_id);
    if (!entry) return; // not loaded yet: its page will bring it fresh
    entry.data = card;
    fillCard(entry);
    updateCounts();
  }

  function addCards(cards) {
    const fragment = document.createDocumentFragment();
    for (const card of cards) {
      if (!card || typeof card.shot_id !== "string") continue;
      let entry = state.cards.get(card.shot_id);
      if (!entry) {
        entry = { data: card, parts: buildCard(card.shot_id) };
        state.cards.set(card.shot_id, entry);
        state.order.push(card.shot_id);
      }
      entry.data = card;
      fillCard(entry);
      fragment.append(entry.parts.root);
    }
    $("board").append(fragment);
  }

  async function loadMore() {
    if (state.loading || state.cards.size >= state.total) return;
    state.loading = true;
    const generation = state.generation;
    try {
      const data = await getJSON(`/api/board?offset=${state.cards.size}&limit=${PAGE}`);
      if (generation !== state.generation) return;
      if (num(data.total) !== null) state.total = data.total;
      addCards(Array.isArray(data.cards) ? data.cards : []);
      firstCards();
      if (!Array.isArray(data.cards) || !data.cards.length) state.total = state.cards.size;
    } catch (err) {
      message(String(err.message || err), true);
    } finally {
      if (generation === state.generation) state.loading = false;
      $("loading").hidden = true;
      updateCounts();
    }
    if (generation === state.generation) checkSentinel();
  }

  function firstCards() {
    if (state.firstShown) return;
    state.firstShown = true;
    performance.mark("storycore:first-cards");
    document.body.dataset.ready = "true";
  }

  function checkSentinel() {
    // the observer fires on changes only: when the sentinel is still in view after a page
    // (a tall window), ask for the next page at once
    const box = $("sentinel").getBoundingClientRect();
    if (box.top < window.innerHeight + 800) loadMore();
  }

  async function reloadBoard() {
    // fetch every page loaded so far again, keep the elements (open forms, focus) of shots
    // that are still there, drop the others
    state.generation += 1;
    const generation = state.generation;
    state.loading = true;
    try {
      const meta = await getJSON("/api/meta");
      if (generation !== state.generation) return;
      applyMeta(meta);
      const want = Math.max(PAGE, state.cards.size);
      const cards = [];
      for (let offset = 0; offset < Math.min(want, state.total); offset += PAGE) {
        const data = await getJSON(`/api/board?offset=${offset}&limit=${PAGE}`);
        if (generation !== state.generation) return;
        if (!Array.isArray(data.cards) || !data.cards.length) break;
        cards.push(...data.cards);
      }
      const old = state.cards;
      const hadFocus = document.activeElement;
      state.cards = new Map();
      state.order = [];
      const fragment = document.createDocumentFragment();
      for (const card of cards) {
        if (!card || typeof card.shot_id !== "string" || state.cards.has(card.shot_id)) continue;
        const entry = old.get(card.shot_id) || { data: card, parts: buildCard(card.shot_id) };
        entry.data = card;
        state.cards.set(card.shot_id, entry);
        state.order.push(card.shot_id);
        fillCard(entry);
        fragment.append(entry.parts.root);
      }
      for (const shot of [...state.selected]) {
        if (!state.cards.has(shot)) state.selected.delete(shot);
      }
      $("board").replaceChildren(fragment);
      if (hadFocus instanceof HTMLElement && hadFocus.isConnected) hadFocus.focus();
      firstCards();
    } catch (err) {
      message(String(err.message || err), true);
    } finally {
      if (generation === state.generation) state.loading = false;
      updateCounts();
    }
    if (generation === state.generation) checkSentinel();
  }

  function onBoard(msg) {
    if (typeof msg.token === "string") state.token = msg.token;
    const order = Array.isArray(msg.order) ? msg.order : null;
    const total = num(msg.total);
    const same = order !== null && total === state.total &&
      state.order.every((shot, i) => order[i] === shot);
    if (!same) reloadBoard();
  }

  function applyMeta(meta) {
    if (typeof meta.token === "string") state.token = meta.token;
    if (typeof meta.csrf === "string" && meta.csrf && !state.csrf) state.csrf = meta.csrf;
    if (num(meta.total) !== null) state.total = meta.total;
    const title = str(meta.title) || str(meta.project_id);
    if (title) {
      $("project-title").textContent = title;
      document.title = `${title} · StoryCore review`;
    }
    setRender(meta.render);
  }

  function connectEvents() {
    if (typeof EventSource === "undefined") return;
    const source = new EventSource("/api/events");
    let lost = false;
    const on = (type, handler) => source.addEventListener(type, (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        return;
      }
      if (msg && typeof msg === "object") handler(msg);
    });
    on("card", (msg) => applyCard(msg.card));
    on("board", onBoard);
    on("progress", onProgress);
    on("render", setRender);
    on("resync", () => reloadBoard());
    on("error", (msg) => message(str(msg.text), true));
    source.addEventListener("open", () => {
      if (lost) {
        lost = false;
        message("");
        reloadBoard(); // messages may have been missed while away
      }
    });
    source.onerror = () => {
      if (source.readyState !== EventSource.OPEN) {
        lost = true;
        message("Connection to the review server lost; reconnecting…", true);
      }
    };
  }

  // ---- viewer and keyboard ----------------------------------------------------------------

  function openViewer(shot) {
    const entry = entryOf(shot);
    const a = entry && entry.data.active;
    if (!a || !a.path) return;
    const viewer = $("viewer");
    $("viewer-img").setAttribute("src", mediaUrl(a.asset_id));
    $("viewer-img").alt = str(entry.data.title);
    $("viewer-caption").textContent =
      `${str(entry.data.shot_id)} · ${str(entry.data.title)} · take ${a.take} · ` +
      `${a.width}×${a.height}${a.profile ? ` · ${a.profile}` : ""}`;
    viewer.dataset.shot = shot;
    viewer.hidden = false;
    $("viewer-close").focus();
  }

  function closeViewer() {
    const viewer = $("viewer");
    if (viewer.hidden) return;
    viewer.hidden = true;
    $("viewer-img").removeAttribute("src");
    const entry = entryOf(viewer.dataset.shot || "");
    if (entry) entry.parts.root.focus();
  }

  function columns() {
    const cards = $("board").children;
    if (cards.length < 2) return 1;
    const top = cards[0].offsetTop;
    let n = 1;
    while (n < cards.length && cards[n].offsetTop === top) n += 1;
    return n;
  }

  function focusCard(index) {
    if (!state.order.length) return;
    const i = Math.max(0, Math.min(state.order.length - 1, index));
    const entry = entryOf(state.order[i]);
    if (!entry) return;
    state.focus = i;
    entry.parts.root.focus();
    entry.parts.root.scrollIntoView({ block: "nearest" });
    if (i >= state.order.length - columns()) loadMore();
  }

  function onKey(ev) {
    if (!$("viewer").hidden) {
      if (ev.key === "Escape") {
        ev.preventDefault();
        closeViewer();
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, form")) return;
    const card = target instanceof HTMLElement ? target.closest(".card") : null;
    const current = card ? state.order.indexOf(card.dataset.shot) : state.focus;
    const shot = current >= 0 ? state.order[current] : null;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
    if (ev.key in moves) {
      ev.preventDefault();
      focusCard(current < 0 ? 0 : current + moves[ev.key]);
      return;
    }
    if (!shot || (target instanceof HTMLElement && target.closest("button") && ev.key === "Enter")) {
      return;
    }
    if (ev.key === "a") {
      ev.preventDefault();
      toggleApprove(shot);
    } else if (ev.key === "r") {
      ev.preventDefault();
      reject(shot);
    } else if (/^[1-9]$/.test(ev.key)) {
      const takes = entryOf(shot).data.takes || [];
      const t = takes[Number(ev.key) - 1];
      if (t) {
        ev.preventDefault();
        pick(shot, t.asset_id);
      }
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      openViewer(shot);
    }
  }

  // ---- start ------------------------------------------------------------------------------

  async function start() {
    const tag = document.querySelector('meta[name="storycore-csrf"]');
    const csrf = tag ? tag.getAttribute("content") || "" : "";
    state.csrf = csrf.includes("{{") ? "" : csrf;
    wireToolbar();
    document.addEventListener("keydown", onKey);
    $("viewer-close").addEventListener("click", closeViewer);
    $("viewer").addEventListener("click", (ev) => {
      if (ev.target === $("viewer")) closeViewer();
    });
    try {
      const meta = await getJSON("/api/meta");
      applyMeta(meta);
      fillProfiles(meta.profiles, meta.render && meta.render.profile);
    } catch (err) {
      $("loading").textContent = String(err.message || err);
      return;
    }
    connectEvents();
    if (state.total === 0) {
      $("loading").textContent = "The storyboard has no shots.";
      firstCards();
      updateCounts();
      return;
    }
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { rootMargin: "800px 0px" }).observe($("sentinel"));
    await loadMore();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
