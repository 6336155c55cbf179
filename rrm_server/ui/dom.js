// Building the page from data without ever parsing data as HTML: every string becomes a text node
// (queries and responses are untrusted; a response holding <script> shows as those characters).

// h("div", {class: "card", title: "..."}, "text", child, [more, children])
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

// A short, single-line view of a text (previews in tables and the bracket).
export function preview(text, chars = 48) {
  const flat = String(text ?? "").replace(/\s+/g, " ").trim();
  return flat.length <= chars ? flat : flat.slice(0, chars - 1) + "…";
}

export function fmt(x, digits = 2) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}
