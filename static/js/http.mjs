/* Talking to the server outside the socket: forms posted with the CSRF token, and fragments of
 * server-rendered HTML. Fragments are parsed with DOMParser, whose documents run no scripts, and
 * only then moved into the page. */

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

export function parseFragment(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  return Array.from(doc.body.children).map((node) => document.importNode(node, true));
}

export async function fetchFragment(url) {
  const separator = url.includes("?") ? "&" : "?";
  const response = await fetch(url + separator + "fragment=1", { credentials: "same-origin" });
  if (!response.ok) throw new Error("HTTP " + response.status);
  return parseFragment(await response.text());
}

export async function postForm(url, data) {
  return fetch(url, {
    method: "POST",
    body: data,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
  });
}
