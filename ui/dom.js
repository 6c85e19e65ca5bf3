// DOM writes shared by the dashboard's modules: each changes the node only when the value differs,
// so a refresh every 2 s leaves what did not change alone. Both set text or an attribute, never HTML.

/** @param {Node} node @param {string} text */
export function setText (node, text) {
  if (node.textContent !== text) node.textContent = text
}

/** @param {Element} node @param {string} name @param {string} value */
export function setAttr (node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value)
}
