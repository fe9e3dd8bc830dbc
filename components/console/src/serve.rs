//! How a file is answered: caching (hashed assets for a year, pages revalidated), a 304 for a
//! copy the browser already has, gzip when the browser takes it, and the headers that keep the
//! pages from running anything but their own scripts.
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use kit::{response, Problem};

use crate::files::{self, File};

/// Only the console's own files run or load: no inline script, no `eval`, no other origin. The
/// API is on the same origin (the gateway), so `connect-src 'self'` is all the scripts need.
/// Swagger UI's stylesheet embeds its icons as `data:` images.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A page may be kept, but must be revalidated (a 304 when unchanged), so a new build's page,
/// naming new assets, is seen at once.
const REVALIDATE: &str = "no-cache";

pub fn respond(request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let path = request.uri().path();
    let method = request.method();
    let Some(file) = files::find(path) else {
        return response::problem(&Problem::not_found(format!("no console page at {path}")));
    };
    if method != Method::GET && method != Method::HEAD {
        return response::problem(&Problem::method_not_allowed(
            method.as_str(),
            path,
            "GET, HEAD",
        ));
    }
    let mut answer = if unchanged(request.headers(), file) {
        with_status(StatusCode::NOT_MODIFIED, Vec::new())
    } else if accepts_gzip(request.headers()) {
        let mut answer = with_status(StatusCode::OK, file.gzip.to_vec());
        answer
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        answer
    } else {
        with_status(StatusCode::OK, file.identity.to_vec())
    };
    if method == Method::HEAD {
        answer.body_mut().clear();
    }
    let headers = answer.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, file.content_type),
        (header::ETAG, file.etag),
        (
            header::CACHE_CONTROL,
            if file.immutable {
                IMMUTABLE
            } else {
                REVALIDATE
            },
        ),
        (header::VARY, "accept-encoding"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    answer
}

fn with_status(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut answer = Response::new(body);
    *answer.status_mut() = status;
    answer
}

/// `If-None-Match` names the file's current ETag (or `*`).
fn unchanged(headers: &HeaderMap, file: &File) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == file.etag || tag == "*")
}

/// `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> Response<Vec<u8>> {
        let mut request = Request::builder().uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        respond(&request.body(Vec::new()).unwrap())
    }

    fn asset_named(prefix: &str) -> &'static File {
        files::FILES
            .iter()
            .find(|f| f.path.starts_with(prefix))
            .unwrap_or_else(|| panic!("no asset {prefix}…"))
    }

    #[test]
    fn the_page_names_its_assets_by_hash_and_is_revalidated() {
        let page = get("/", &[]);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let html = String::from_utf8(page.into_body()).unwrap();
        let app = asset_named("/assets/app.");
        assert!(html.contains(app.path), "{html}");
        assert!(!html.contains("{{asset:"), "every placeholder replaced");
        let app_source = std::str::from_utf8(app.identity).unwrap();
        assert!(
            !app_source.contains("from \"./api.js\""),
            "imports name hashed modules"
        );
    }

    #[test]
    fn hashed_assets_are_kept_for_a_year_and_revalidate_to_304() {
        let app = asset_named("/assets/app.");
        let answer = get(app.path, &[]);
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(answer.body(), app.identity);
        let again = get(app.path, &[("if-none-match", app.etag)]);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        assert_eq!(
            get(app.path, &[("if-none-match", "\"other\"")]).status(),
            StatusCode::OK
        );
    }

    #[test]
    fn gzip_only_for_browsers_that_take_it() {
        let css = asset_named("/assets/console.");
        let zipped = get(css.path, &[("accept-encoding", "gzip, deflate, br")]);
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(zipped.body(), css.gzip);
        let refused = get(css.path, &[("accept-encoding", "gzip;q=0, br")]);
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(refused.body(), css.identity);
    }

    #[test]
    fn every_answer_carries_a_strict_policy() {
        let page = get("/reference", &[]);
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(policy.contains("script-src 'self';"));
        assert!(!policy.contains("unsafe"));
        assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[test]
    fn unknown_paths_and_methods_are_problems() {
        let missing = get("/assets/app.js", &[]);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            missing.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let post = respond(
            &Request::builder()
                .method(Method::POST)
                .uri("/")
                .body(Vec::new())
                .unwrap(),
        );
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn no_page_has_an_inline_script_or_style() {
        for file in files::FILES
            .iter()
            .filter(|f| f.content_type.starts_with("text/html"))
        {
            let html = std::str::from_utf8(file.identity).unwrap();
            for (at, _) in html.match_indices("<script") {
                let tag = &html[at..at + html[at..].find('>').unwrap()];
                assert!(tag.contains(" src="), "{}: inline script {tag}", file.path);
            }
            assert!(!html.contains("<style"), "{}: inline style", file.path);
            assert!(!html.contains(" style="), "{}: style attribute", file.path);
            let handler = html.split(" on").skip(1).find(|rest| {
                let name_end = rest.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(0);
                name_end > 0 && rest[name_end..].starts_with('=')
            });
            assert!(handler.is_none(), "{}: event handler attribute", file.path);
        }
    }
}
