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
];

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
}
