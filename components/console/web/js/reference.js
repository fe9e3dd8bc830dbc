// The API reference: Swagger UI (vendored, see vendor/README.md) over the gateway's merged
// document. Its "Try it out" calls the gateway itself, with the token pasted into Authorize.
const start = () =>
  window.SwaggerUIBundle({
    url: "/api-docs",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: false,
    // The document's own servers list is empty: calls go to the origin that served the page.
    tryItOutEnabled: false,
    // The token stays in this tab's memory only.
    persistAuthorization: false,
    defaultModelsExpandDepth: 0,
    // Its highlighting colours some tokens too faintly on their dark background (WCAG AA
    // contrast); bodies are shown as plain text instead.
    syntaxHighlight: false,
  });

// Swagger UI shows requests and answers in boxes that scroll; a box that scrolls must take the
// keyboard's focus, or keyboard users cannot scroll it (WCAG 2.1.1). Each one is made
// focusable as Swagger UI draws it.
const SCROLLING_BOXES = ".curl, .highlight-code pre, .microlight";
new MutationObserver(() => {
  for (const box of document.querySelectorAll(SCROLLING_BOXES)) {
    if (!box.hasAttribute("tabindex")) box.tabIndex = 0;
  }
}).observe(document.body, { childList: true, subtree: true });

// `defer` scripts run before modules, but only once the document is parsed: both are done here.
if (window.SwaggerUIBundle) {
  start();
} else {
  window.addEventListener("DOMContentLoaded", start);
}
