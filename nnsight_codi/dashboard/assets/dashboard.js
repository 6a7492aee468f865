// The latent dashboard: renders one example at a time from the JSON embedded in the page.
// No network; every string goes through textContent.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var S = D.strings, SCALE = D.scale, KIND = D.kinds;
  var EX = D.examples;
  var state = { filtered: [], cur: 0, step: 0, layer: 0 };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function fmt(v) { return (v / SCALE).toFixed(3); }
  function exact(v) { return (v / SCALE).toFixed(4); }
  function show(tok) { return tok === "" ? "\u2205" : tok; }
  function answerText(v) { return v === null || v === undefined ? "none" : String(v); }

  // ---------------------------------------------------------------- header, banners
  function header() {
    $("title").textContent = D.title;
    var bits = [EX.length + " examples"];
    if (D.dataset) bits.push("dataset " + D.dataset);
    if (D.steps.length) bits.push(D.steps.length + " steps");
    if (D.top_k) bits.push("top-" + D.top_k + " attention (all layers and heads averaged)");
    $("meta").textContent = bits.join(" \u00b7 ");
    var m = $("missing");
    D.missing.forEach(function (msg) { m.appendChild(el("div", "banner", msg)); });
    var sel = $("layer");
    if (!D.layers.length) { sel.disabled = true; sel.appendChild(el("option", null, "none")); return; }
    D.layers.forEach(function (l, i) {
      var o = el("option", null, "layer " + l + (l === D.layer ? " (best)" : ""));
      o.value = String(i);
      sel.appendChild(o);
    });
    state.layer = Math.max(0, D.layers.indexOf(D.layer));
    sel.value = String(state.layer);
  }

  // ---------------------------------------------------------------- example list
  function applyFilter() {
    var q = $("search").value.trim().toLowerCase();
    var f = $("filter").value;
    state.filtered = [];
    for (var i = 0; i < EX.length; i++) {
      var e = EX[i];
      if (f === "correct" && e.c !== 1) continue;
      if (f === "wrong" && e.c !== 0) continue;
      if (q && e.id.toLowerCase().indexOf(q) < 0 && e.q.toLowerCase().indexOf(q) < 0) continue;
      state.filtered.push(i);
    }
    renderList();
  }

  function renderList() {
    var list = $("list"), frag = document.createDocumentFragment();
    list.textContent = "";
    state.filtered.forEach(function (i) {
      var e = EX[i], li = el("li");
      li.dataset.index = String(i);
      var mark = el("span", "mark " + (e.c === 1 ? "ok" : e.c === 0 ? "bad" : ""), e.c === 1 ? "\u2713" : e.c === 0 ? "\u2717" : "\u00b7");
      li.appendChild(mark);
      li.appendChild(document.createTextNode(e.id + "  " + e.q));
      li.title = e.q;
      if (i === state.cur) li.className = "current";
      frag.appendChild(li);
    });
    list.appendChild(frag);
    $("count").textContent = state.filtered.length + " of " + EX.length + " shown";
  }

  function markCurrent() {
    var items = $("list").children;
    for (var j = 0; j < items.length; j++) {
      items[j].className = Number(items[j].dataset.index) === state.cur ? "current" : "";
    }
    var cur = $("list").querySelector("li.current");
    if (cur && cur.scrollIntoView) cur.scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------- one example
  function queryPos(e, s) {
    if (!e.k) return -1;
    var bot = e.k.indexOf(KIND.indexOf("bot"));
    return bot < 0 ? -1 : bot + s;
  }

  function lensAt(e, s) {
    if (!e.l || !e.l[s]) return null;
    return e.l[s][state.layer] || null;
  }

  function renderExample() {
    var e = EX[state.cur];
    document.body.dataset.example = e.id;
    $("ex-id").textContent = e.id;
    var ans = $("answer");
    ans.textContent = "";
    if (e.c !== undefined) {
      ans.appendChild(document.createTextNode("gold " + answerText(e.g) + " \u00b7 prediction " + answerText(e.p) + " \u00b7 "));
      ans.appendChild(el("b", e.c ? "ok" : "bad", e.c ? "correct" : "wrong"));
    }
    var toks = $("tokens");
    toks.textContent = "";
    if (e.t) {
      e.t.forEach(function (si, p) {
        var span = el("span", "tok " + KIND[e.k[p]], show(S[si]));
        span.dataset.pos = String(p);
        toks.appendChild(span);
      });
    } else {
      toks.appendChild(el("span", null, e.q));
    }
    var steps = $("steps");
    steps.textContent = "";
    D.steps.forEach(function (name, s) {
      var b = el("button", "step");
      b.type = "button";
      b.dataset.step = String(s);
      b.appendChild(el("span", "name", name));
      var lens = lensAt(e, s);
      if (lens && lens[0].length) {
        b.appendChild(el("span", "top1", show(S[lens[0][0]])));
        b.appendChild(el("span", "p", "p = " + fmt(lens[1][0])));
      } else {
        b.appendChild(el("span", "top1 none", "\u2014"));
      }
      if (e.d && e.d[s]) b.appendChild(el("span", "steptext", S[e.d[s]]));
      b.addEventListener("click", function () { selectStep(s); });
      steps.appendChild(b);
    });
    markCurrent();
    selectStep(Math.min(state.step, D.steps.length - 1));
  }

  function selectStep(s) {
    var e = EX[state.cur];
    state.step = Math.max(0, s);
    document.body.dataset.step = String(state.step);
    var cards = $("steps").children;
    for (var j = 0; j < cards.length; j++) cards[j].classList.toggle("selected", j === state.step);
    var name = D.steps[state.step] || "";
    // highlights over the source tokens
    var toks = $("tokens").children, q = queryPos(e, state.step);
    var top = e.a && e.a[state.step] ? e.a[state.step] : [[], []];
    var maxw = top[1].length ? top[1][0] : 1;
    var rankOf = {};
    top[0].forEach(function (p, r) { rankOf[p] = r; });
    if (e.t) {
      for (var p = 0; p < toks.length; p++) {
        var t = toks[p];
        var r = rankOf[p];
        t.style.backgroundColor = r === undefined ? "" : "rgba(var(--hl), " + (0.15 + 0.85 * top[1][r] / maxw).toFixed(3) + ")";
        t.classList.toggle("attended", r !== undefined);
        t.classList.toggle("query", p === q);
        t.style.opacity = q >= 0 && p > q ? "0.35" : "";
        var old = t.querySelector(".rank");
        if (old) t.removeChild(old);
        if (r !== undefined) t.appendChild(el("span", "rank", String(r + 1)));
      }
    }
    // top-K attended list
    var att = $("attended");
    att.textContent = "";
    $("attended-title").textContent = "Top " + D.top_k + " attended sources of " + name;
    if (!e.a) {
      att.appendChild(el("li", "none", "no attention in this store"));
    } else {
      top[0].forEach(function (pos, r) {
        var w = top[1][r];
        var li = el("li");
        var tok = e.t ? S[e.t[pos]] : "position " + pos;
        li.dataset.pos = String(pos);
        li.dataset.weight = exact(w);
        li.dataset.token = tok;
        var bar = el("span", "bar");
        bar.style.width = (4 * w / maxw).toFixed(2) + "em";
        li.appendChild(bar);
        li.appendChild(el("span", "tok-text", show(tok)));
        li.appendChild(document.createTextNode(" " + fmt(w) + " "));
        li.appendChild(el("span", "kind", (e.k ? KIND[e.k[pos]] + " " : "") + "@" + pos));
        att.appendChild(li);
      });
    }
    // logit lens list
    var lensList = $("lens");
    lensList.textContent = "";
    var lens = lensAt(e, state.step);
    $("lens-title").textContent = "Logit lens top-5 of " + name + (D.layers.length ? " at layer " + D.layers[state.layer] : "");
    if (!lens) {
      lensList.appendChild(el("li", "none", D.layers.length ? "no lens read-out at this step" : "no lens read-outs in this store (capture with --what lens)"));
    } else {
      lens[0].forEach(function (si, r) {
        var li = el("li");
        li.dataset.token = S[si];
        li.dataset.prob = exact(lens[1][r]);
        var bar = el("span", "bar lensbar");
        bar.style.width = (4 * lens[1][r] / SCALE).toFixed(2) + "em";
        li.appendChild(bar);
        li.appendChild(el("span", "tok-text", show(S[si])));
        li.appendChild(document.createTextNode(" " + fmt(lens[1][r])));
        lensList.appendChild(li);
      });
    }
    // step decoder (SIM-CoT): the decoded reasoning step beside the logit lens
    var box = $("steptext");
    if (box) {
      box.textContent = "";
      $("steptext-title").textContent = "Step decoder: " + name;
      if (!e.d) {
        box.appendChild(el("div", "none", "no decoded steps in this store (capture a SIM-CoT release with --what step_decoder)"));
      } else {
        box.appendChild(el("div", e.d[state.step] ? "decoded" : "none", e.d[state.step] ? S[e.d[state.step]] : "no step decoded at this step"));
      }
    }
    writeHash();
  }

  // ---------------------------------------------------------------- navigation
  function go(i) {
    if (i < 0 || i >= EX.length) return;
    state.cur = i;
    renderExample();
  }
  function step(delta) {
    var at = state.filtered.indexOf(state.cur);
    var next = at < 0 ? 0 : at + delta;
    if (next >= 0 && next < state.filtered.length) go(state.filtered[next]);
  }
  function writeHash() {
    var h = "#ex=" + encodeURIComponent(EX[state.cur].id) + "&step=" + state.step +
      (D.layers.length ? "&layer=" + D.layers[state.layer] : "");
    if (location.hash !== h && history.replaceState) {
      try { history.replaceState(null, "", h); } catch (err) { /* file URLs in some browsers */ }
    }
  }
  function readHash() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) out[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }

  function init() {
    header();
    applyFilter();
    var h = readHash();
    if (h.layer !== undefined && D.layers.indexOf(Number(h.layer)) >= 0) {
      state.layer = D.layers.indexOf(Number(h.layer));
      $("layer").value = String(state.layer);
    }
    var start = 0;
    if (h.ex !== undefined) {
      for (var i = 0; i < EX.length; i++) if (EX[i].id === h.ex) { start = i; break; }
    }
    if (!EX.length) {
      $("ex-id").textContent = "this store has no complete examples";
    } else {
      state.cur = start;
      renderExample();
      if (h.step !== undefined) {
        var card = $("steps").querySelector('[data-step="' + Number(h.step) + '"]');
        if (card) card.click();  // the same path as a user's click
      }
    }
    $("search").addEventListener("input", applyFilter);
    $("filter").addEventListener("change", applyFilter);
    $("layer").addEventListener("change", function () { state.layer = Number(this.value); renderExample(); });
    $("prev").addEventListener("click", function () { step(-1); });
    $("next").addEventListener("click", function () { step(1); });
    $("list").addEventListener("click", function (ev) {
      var li = ev.target.closest("li");
      if (li) go(Number(li.dataset.index));
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.target && (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT")) return;
      if (ev.key === "ArrowRight") step(1);
      else if (ev.key === "ArrowLeft") step(-1);
      else if (ev.key === "ArrowDown") { selectStep(Math.min(state.step + 1, D.steps.length - 1)); ev.preventDefault(); }
      else if (ev.key === "ArrowUp") { selectStep(Math.max(state.step - 1, 0)); ev.preventDefault(); }
    });
    document.body.dataset.firstRenderMs = performance.now().toFixed(1);
    document.body.dataset.ready = "1";
  }
  init();
})();
