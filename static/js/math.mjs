/* Math: the server leaves TeX as text in .math-inline / .math-display; KaTeX (vendored under
 * vendor/katex) typesets it, loaded only once a page shows math. katex.render builds DOM nodes
 * and sets their styles through the CSSOM, which the CSP allows (it forbids style attributes in
 * markup, which is why renderToString is not used). On bad TeX the source stays, as text. */

let katexLoaded = null;

// `urls`: the hashed addresses of KaTeX's script and stylesheet ({js, css}).
function loadKatex(urls) {
  if (!katexLoaded) {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = urls.css;
    document.head.append(css);
    katexLoaded = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = urls.js;
      script.onload = () => resolve(window.katex);
      script.onerror = reject;
      document.head.append(script);
    });
  }
  return katexLoaded;
}

function typesetOne(katex, element) {
  if (!element.isConnected || element.dataset.typeset) return;
  element.dataset.typeset = "1";
  const displayMode = element.classList.contains("math-display");
  const tex = element.textContent;
  try {
    katex.render(tex, element, { displayMode, throwOnError: true });
  } catch (error) {
    element.textContent = tex; // KaTeX may have emptied it before failing
    element.classList.add("math-error");
  }
}

export function typesetMath(scope, urls) {
  const selector = ".math-inline:not([data-typeset]), .math-display:not([data-typeset])";
  const pending = Array.from(scope.querySelectorAll(selector));
  if (!pending.length) return;
  loadKatex(urls).then(
    (katex) => pending.forEach((element) => typesetOne(katex, element)),
    () => {} // not loaded: the TeX stays readable as text
  );
}
