// Trellis pages: small behaviours on top of server-rendered HTML (no build step).
(function () {
  "use strict";

  // Lookup typeahead: the visible box searches, the hidden input keeps the chosen id.
  let timer = null;
  document.addEventListener("input", function (event) {
    const box = event.target.closest("[data-lookup-text]");
    if (!box) return;
    const root = box.closest("[data-lookup]");
    root.querySelector("[data-lookup-value]").value = "";  // until an option is picked
    clearTimeout(timer);
    timer = setTimeout(function () { showOptions(root, box); }, 200);
  });
  document.addEventListener("focusin", function (event) {
    const box = event.target.closest("[data-lookup-text]");
    if (!box) return;
    if (box.dataset.quiet) delete box.dataset.quiet;  // back from the list: stay as it is
    else showOptions(box.closest("[data-lookup]"), box);
  });
  function focusQuietly(box) {
    if (document.activeElement === box) return;
    box.dataset.quiet = "1";
    box.focus();
  }
  function showOptions(root, box) {
    const asked = box.value;
    const url = box.dataset.lookupUrl + "?q=" + encodeURIComponent(asked);
    fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        // An answer to an older text (typing went on) must not replace a newer one.
        if (box.value === asked) root.querySelector(".lookup-options").innerHTML = html;
      });
  }
  document.addEventListener("click", function (event) {
    const option = event.target.closest("[data-pick-id]");
    if (option) {
      const root = option.closest("[data-lookup]");
      const hidden = root.querySelector("[data-lookup-value]");
      const box = root.querySelector("[data-lookup-text]");
      hidden.value = option.dataset.pickId;
      box.value = option.dataset.pickTitle;
      root.querySelector(".lookup-options").innerHTML = "";
      focusQuietly(box);
      hidden.dispatchEvent(new Event("change", { bubbles: true }));
      return;
    }
    document.querySelectorAll(".lookup-options").forEach(function (list) {
      if (!list.parentElement.contains(event.target)) list.innerHTML = "";
    });
  });

  // The typeahead by keyboard: ↓ and ↑ walk the options, Enter picks one (the first, from
  // the box) and never submits a half-filled form, Escape closes the list.
  document.addEventListener("keydown", function (event) {
    const root = event.target.closest("[data-lookup]");
    if (!root) return;
    const box = root.querySelector("[data-lookup-text]");
    const options = Array.from(root.querySelectorAll("[data-pick-id]"));
    const at = options.indexOf(event.target);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!options.length) return;
      event.preventDefault();
      const next = at + (event.key === "ArrowDown" ? 1 : -1);
      if (next < 0) focusQuietly(box);
      else options[Math.min(next, options.length - 1)].focus();
    } else if (event.key === "Enter" && event.target === box) {
      event.preventDefault();
      if (options.length) options[0].click();
    } else if (event.key === "Escape") {
      root.querySelector(".lookup-options").innerHTML = "";
      focusQuietly(box);
    }
  });

  // Line grids: add a row from the template, remove (mark) a row.
  document.addEventListener("click", function (event) {
    const add = event.target.closest("[data-add-line]");
    if (add) {
      const grid = document.getElementById(add.dataset.addLine);
      const template = grid.querySelector("template");
      const body = grid.querySelector("tbody");
      const index = Number(grid.dataset.next || body.rows.length);
      grid.dataset.next = index + 1;
      const html = template.innerHTML.replaceAll("__index__", String(index));
      body.insertAdjacentHTML("beforeend", html);
      const first = body.lastElementChild.querySelector("input:not([type=hidden]), select");
      if (first) first.focus();
      return;
    }
    const remove = event.target.closest("[data-remove-line]");
    if (remove) {
      const row = remove.closest("tr");
      const removed = row.querySelector("[data-removed]");
      removed.value = "1";
      row.hidden = true;
      removed.dispatchEvent(new Event("change", { bubbles: true }));  // the live preview
    }
  });

  // Record forms: the server's live preview ([data-compute], POST …/compute through htmx)
  // answers computed values and field states by input name; applied here as told, no
  // arithmetic or rule of its own.
  document.addEventListener("htmx:afterRequest", function (event) {
    const source = event.detail.elt;
    if (!source.matches || !source.matches("[data-compute]") || !event.detail.successful) return;
    const form = source.closest("form");
    let answer;
    try { answer = JSON.parse(event.detail.xhr.responseText); } catch (e) { return; }
    Object.entries(answer.values || {}).forEach(function (pair) {
      const output = document.getElementById("field-" + pair[0]);
      if (output && output.tagName === "OUTPUT") output.textContent = pair[1];
    });
    Object.entries(answer.fields || {}).forEach(function (pair) {
      const box = form.querySelector('[data-field="' + CSS.escape(pair[0]) + '"]');
      if (box) applyState(box, pair[1]);
    });
    showProblems(form, answer.problems || {});
  });
  // The rules the record breaks as typed: under their field (or above the form's fields
  // when the rule names none), replaced by each answer; saving still decides.
  function showProblems(form, problems) {
    form.querySelectorAll("[data-live-problem]").forEach(function (old) { old.remove(); });
    Object.entries(problems).forEach(function (pair) {
      const box = pair[0] ? form.querySelector('[data-field="' + CSS.escape(pair[0]) + '"]') : null;
      const note = document.createElement(box ? "small" : "p");
      note.className = box ? "error live-problem" : "flash error live-problem";
      note.dataset.liveProblem = "";
      note.setAttribute("role", "status");
      note.textContent = pair[1];
      if (box) box.append(note);
      else form.querySelector("[data-compute]").after(note);
    });
  }
  function applyState(box, state) {
    if (box.tagName === "TD") box.style.visibility = state.visible ? "" : "hidden";
    else box.hidden = !state.visible;
    box.inert = state.readonly;
    box.classList.toggle("locked", state.readonly);
    box.querySelectorAll("input, select, textarea").forEach(function (control) {
      if (control.type !== "hidden") control.setAttribute("aria-required", String(state.required));
    });
    const label = box.querySelector(".field-label");
    if (!label) return;
    let mark = label.querySelector("[data-live-required]");
    if (state.required && !mark && !label.querySelector(".req")) {
      mark = document.createElement("span");
      mark.className = "req";
      mark.dataset.liveRequired = "";
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = "*";
      label.append(" ", mark);
    } else if (!state.required && mark) {
      mark.remove();
    }
  }

  // Lists: select all, confirm bulk delete.
  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-select-all]")) {
      const table = event.target.closest("table");
      table.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = event.target.checked; });
    }
  });
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  // Currency inputs: thousands separators once the user leaves the box.
  document.addEventListener("focusout", function (event) {
    const box = event.target.closest("[data-currency]");
    if (!box || box.value.trim() === "") return;
    const number = Number(box.value.replace(/[,\s]/g, ""));
    if (Number.isFinite(number)) {
      const scale = (box.getAttribute("data-scale") || "2") | 0;
      box.value = number.toLocaleString("en-US", { minimumFractionDigits: scale, maximumFractionDigits: scale });
    }
  });
  // Designers: drag and drop, on top of the move buttons (which work without it). An item
  // ([data-drag-item]) moves within the lists of its kind ([data-drag-list]); it is dragged
  // by its handle only, so the inputs inside it stay usable. A list naming its items' input
  // ([data-drag-name]) renames the moved item's [data-drag-input]: the form then posts the
  // new arrangement, which the server reads as it reads the buttons' result.
  let dragged = null;
  document.addEventListener("mousedown", function (event) {
    const handle = event.target.closest("[data-drag-handle]");
    if (handle) handle.closest("[data-drag-item]").draggable = true;
  });
  document.addEventListener("mouseup", function (event) {
    const handle = event.target.closest("[data-drag-handle]");
    if (handle && !dragged) handle.closest("[data-drag-item]").draggable = false;
  });
  document.addEventListener("dragstart", function (event) {
    const item = event.target.closest && event.target.closest("[data-drag-item]");
    if (!item || !item.draggable) return;
    dragged = item;
    item.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", "");
  });
  document.addEventListener("dragover", function (event) {
    if (!dragged) return;
    const kind = dragged.parentElement.dataset.dragList;
    const list = event.target.closest("[data-drag-list='" + kind + "']");
    if (!list) return;
    event.preventDefault();
    const items = Array.from(list.children).filter(function (el) {
      return el.matches("[data-drag-item]") && el !== dragged;
    });
    const after = items.find(function (el) {
      const box = el.getBoundingClientRect();
      return event.clientY < box.top + box.height / 2;
    });
    if (after) list.insertBefore(dragged, after); else list.appendChild(dragged);
  });
  document.addEventListener("dragend", function () {
    if (!dragged) return;
    const list = dragged.parentElement;
    const input = dragged.querySelector("[data-drag-input]");
    if (input && list.dataset.dragName) input.name = list.dataset.dragName;
    dragged.classList.remove("dragging");
    dragged.draggable = false;
    const form = dragged.closest("form");
    const unsaved = form && form.querySelector("[data-unsaved]");
    if (unsaved) unsaved.hidden = false;
    dragged = null;
  });
  document.addEventListener("drop", function (event) {
    if (dragged) event.preventDefault();
  });
})();
