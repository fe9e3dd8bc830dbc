//! Which component serves a path, who may call it, and what path it sees (the seed's gateway
//! strips the first segment of `/api/...`; auth sees `/login`, `/validate`, `/users`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token needed; a valid one is still passed on (auth's admin-only `/users` needs it).
    Public,
    /// Any valid token.
    Authenticated,
    /// A valid token with this role.
    Role(&'static str),
    /// The console's pages and assets: the same for everyone, so no token is read or passed on,
    /// nothing is audited, and no rate-limit bucket is spent (a page load fetches several files
    /// at once, and the API calls the page then makes are limited as usual).
    Page,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// Path prefix, matched on a segment boundary.
    pub prefix: &'static str,
    /// wadm link name of the target component's `pm:platform/service` link.
    pub link: &'static str,
    /// Stripped from the front of the path before forwarding.
    pub strip: &'static str,
    pub access: Access,
}

pub const ROUTES: &[Route] = &[
    Route {
        prefix: "/auth",
        link: "auth",
        strip: "/auth",
        access: Access::Public,
    },
    Route {
        prefix: "/api/patients",
        link: "patients",
        strip: "/api",
        access: Access::Authenticated,
    },
    Route {
        prefix: "/api/appointments",
        link: "appointments",
        strip: "/api",
        access: Access::Authenticated,
    },
    Route {
        prefix: "/api/billing",
        link: "billing",
        strip: "/api",
        access: Access::Authenticated,
    },
    Route {
        prefix: "/api/analytics",
        link: "analytics",
        strip: "/api",
        access: Access::Role("ADMIN"),
    },
    Route {
        prefix: "/api/audit",
        link: "audit",
        strip: "/api",
        access: Access::Role("ADMIN"),
    },
    // The staff console (issue 21). `/` matches only `/` itself: the prefix must be followed by
    // nothing or by `/`, and what follows the leading `/` is neither.
    Route {
        prefix: "/",
        link: "console",
        strip: "",
        access: Access::Page,
    },
    Route {
        prefix: "/reference",
        link: "console",
        strip: "",
        access: Access::Page,
    },
    Route {
        prefix: "/assets",
        link: "console",
        strip: "",
        access: Access::Page,
    },
];

/// The components behind the routes, each once: what `/ready` asks.
pub fn links() -> Vec<&'static str> {
    links_where(|_| true)
}

/// The components behind the API's routes (not the console's pages), each once: the services
/// with OpenAPI documents.
pub fn api_links() -> Vec<&'static str> {
    links_where(|route| route.access != Access::Page)
}

fn links_where(keep: impl Fn(&Route) -> bool) -> Vec<&'static str> {
    let mut links: Vec<&'static str> = ROUTES.iter().filter(|r| keep(r)).map(|r| r.link).collect();
    links.dedup();
    links
}

/// The route for `path` and the path the component sees.
pub fn resolve(path: &str) -> Option<(&'static Route, String)> {
    ROUTES.iter().find_map(|route| {
        let rest = path.strip_prefix(route.prefix)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None; // `/api/patientsx` is not under `/api/patients`
        }
        let forwarded = path.strip_prefix(route.strip).unwrap_or(path);
        Some((
            route,
            if forwarded.is_empty() {
                "/".to_string()
            } else {
                forwarded.to_string()
            },
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries_and_are_stripped() {
        let (route, path) = resolve("/api/patients/123").unwrap();
        assert_eq!((route.link, path.as_str()), ("patients", "/patients/123"));
        assert_eq!(resolve("/api/patients").unwrap().1, "/patients");
        assert_eq!(resolve("/auth/login").unwrap().1, "/login");
        assert!(resolve("/api/patientsx").is_none());
        assert!(resolve("/api").is_none());
        assert_eq!(
            resolve("/api/analytics/summary").unwrap().0.access,
            Access::Role("ADMIN")
        );
    }

    #[test]
    fn the_console_has_the_root_and_its_own_prefixes_only() {
        for path in ["/", "/reference", "/assets/app.0123abcd.js"] {
            let (route, forwarded) = resolve(path).unwrap();
            assert_eq!((route.link, route.access), ("console", Access::Page));
            assert_eq!(forwarded, path, "the console sees the whole path");
        }
        assert!(
            resolve("/nope").is_none(),
            "unknown paths stay the gateway's 404"
        );
        assert!(resolve("/referencex").is_none());
        assert_eq!(
            links(),
            [
                "auth",
                "patients",
                "appointments",
                "billing",
                "analytics",
                "audit",
                "console"
            ]
        );
    }
}
