//! The embedded files, as `build.rs` hashed, rewrote and compressed them.

/// One file the console serves.
pub struct File {
    /// Where it is served: `/`, `/reference`, or `/assets/<name>.<hash>.<ext>`.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Its name changes with its content, so a browser may keep it for good.
    pub immutable: bool,
    /// A strong validator: the SHA-256 of the identity body, quoted.
    pub etag: &'static str,
    pub identity: &'static [u8],
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/files.rs"));

/// The file served at `path`, if any.
pub fn find(path: &str) -> Option<&'static File> {
    FILES.iter().find(|file| file.path == path)
}
