//! Embeds the console's files in the component: every asset gets a content-hashed name (so a
//! browser may keep it for a year), the pages and scripts point at those names, and each text
//! file also gets a gzip copy. The result is `$OUT_DIR/files.rs`, included by `src/files.rs`.
//!
//! - `web/*.html` are pages: `index.html` is served at `/`, `reference.html` at `/reference`. A
//!   page names an asset as `{{asset:NAME}}`, replaced by its hashed path.
//! - `web/js/*.js` are ES modules; `import … from "./NAME.js"` is rewritten to the hashed name,
//!   so a module's hash covers the modules it imports (a change anywhere renames its importers).
//! - `web/*.css`, `web/*.svg` and the vendored `vendor/*/` files are assets as they are.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Vendored files served as assets (vendor/README.md says where they come from).
const VENDORED: [&str; 2] = [
    "vendor/swagger-ui-dist/swagger-ui-bundle.js",
    "vendor/swagger-ui-dist/swagger-ui.css",
];

/// Pages and the path each is served at.
const PAGES: [(&str, &str); 2] = [("index.html", "/"), ("reference.html", "/reference")];

struct Built {
    path: String,
    content_type: &'static str,
    immutable: bool,
    body: Vec<u8>,
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=web");
    println!("cargo:rerun-if-changed=vendor");

    // Asset name (as the sources spell it) -> its hashed path under /assets/.
    let mut hashed: BTreeMap<String, String> = BTreeMap::new();
    let mut files: Vec<Built> = Vec::new();

    let mut plain: Vec<PathBuf> = VENDORED.iter().map(|v| manifest.join(v)).collect();
    plain.extend(listed(&manifest.join("web"), &["css", "svg"]));
    for path in plain {
        let body = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files.push(asset(&mut hashed, &path, body));
    }

    // Modules in an order where each comes after those it imports.
    let mut modules: BTreeMap<String, String> = listed(&manifest.join("web/js"), &["js"])
        .into_iter()
        .map(|path| (file_name(&path), fs::read_to_string(&path).unwrap()))
        .collect();
    while !modules.is_empty() {
        let ready: Vec<String> = modules
            .iter()
            .filter(|(_, source)| {
                imports(source)
                    .iter()
                    .all(|import| hashed.contains_key(import) || !modules.contains_key(import))
            })
            .map(|(name, _)| name.clone())
            .collect();
        assert!(
            !ready.is_empty(),
            "web/js: the modules {:?} import each other in a cycle",
            modules.keys()
        );
        for name in ready {
            let mut source = modules.remove(&name).unwrap();
            for import in imports(&source) {
                let target = hashed.get(&import).unwrap_or_else(|| {
                    panic!("web/js/{name} imports ./{import}, which is not in web/js")
                });
                let file = target.trim_start_matches("/assets/");
                source = source.replace(&format!("\"./{import}\""), &format!("\"./{file}\""));
            }
            files.push(asset(&mut hashed, Path::new(&name), source.into_bytes()));
        }
    }

    for (page, served_at) in PAGES {
        let mut source = fs::read_to_string(manifest.join("web").join(page)).unwrap();
        while let Some(start) = source.find("{{asset:") {
            let end = start + source[start..].find("}}").expect("an unclosed {{asset:");
            let name = &source[start + "{{asset:".len()..end];
            let path = hashed
                .get(name)
                .unwrap_or_else(|| panic!("web/{page} names {name}, which is no asset"));
            source.replace_range(start..end + 2, path);
        }
        files.push(Built {
            path: served_at.to_string(),
            content_type: "text/html; charset=utf-8",
            immutable: false,
            body: source.into_bytes(),
        });
    }

    let mut table = String::from("pub static FILES: &[File] = &[\n");
    for (index, file) in files.iter().enumerate() {
        let identity = out.join(format!("file-{index}"));
        fs::write(&identity, &file.body).unwrap();
        let gzip = out.join(format!("file-{index}.gz"));
        fs::write(&gzip, gzipped(&file.body)).unwrap();
        writeln!(
            table,
            "    File {{ path: {:?}, content_type: {:?}, immutable: {}, etag: {:?}, \
             identity: include_bytes!({:?}), gzip: include_bytes!({:?}) }},",
            file.path,
            file.content_type,
            file.immutable,
            format!("\"{}\"", digest(&file.body)),
            identity,
            gzip,
        )
        .unwrap();
    }
    table.push_str("];\n");
    fs::write(out.join("files.rs"), table).unwrap();
}

/// Names the asset `path` by its content and keeps it.
fn asset(hashed: &mut BTreeMap<String, String>, path: &Path, body: Vec<u8>) -> Built {
    let name = file_name(path);
    let (stem, extension) = name
        .rsplit_once('.')
        .expect("an asset without an extension");
    let served = format!("/assets/{stem}.{}.{extension}", &digest(&body)[..12]);
    hashed.insert(name.clone(), served.clone());
    Built {
        path: served,
        content_type: content_type(extension),
        immutable: true,
        body,
    }
}

fn content_type(extension: &str) -> &'static str {
    match extension {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        other => panic!("no content type for .{other} files"),
    }
}

/// The `./NAME.js` modules `source` imports (`from "./NAME.js"`).
fn imports(source: &str) -> Vec<String> {
    source
        .split("from \"./")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
}

/// The files in `dir` (not below it) with one of `extensions`, in name order.
fn listed(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|e| extensions.iter().any(|x| e == *x))
        })
        .collect();
    paths.sort();
    paths
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn digest(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn gzipped(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}
