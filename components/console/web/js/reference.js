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
  });

// `defer` scripts run before modules, but only once the document is parsed: both are done here.
if (window.SwaggerUIBundle) {
  start();
} else {
  window.addEventListener("DOMContentLoaded", start);
}
