//! WIT glue: the gateway forwards `/`, `/reference` and `/assets/…` here over
//! `pm:platform/service`.
mod bindings {
    wit_bindgen::generate!({
        world: "console",
        path: "../../wit",
        with: {
            "pm:platform/types@0.1.0": platform_wit::types,
        },
        generate_all,
    });
}

struct Console;

bindings::export!(Console with_types_in bindings);

impl bindings::exports::pm::platform::service::Guest for Console {
    fn handle(request: platform_wit::types::Request) -> platform_wit::types::Response {
        // No dependencies: everything it serves is in the component.
        platform_wit::serve(request, &[], crate::serve::respond)
    }
}
