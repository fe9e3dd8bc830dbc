//! The stack's data stores as the platform reaches them (issue 18): each service's Postgres login
//! role in use and the Redis user, with the passwords xtask keeps in the stack's directory.
use std::path::PathBuf;
use std::process::Command;

/// A file of the stack's secret store (mode 600, readable by the tests as the same user).
pub fn kept(name: &str) -> String {
    let path = PathBuf::from(std::env::var("PM_STACK_DIR").expect("PM_STACK_DIR"))
        .join("secret-store")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The login role `service`'s provider uses now: one of two that take turns (store_roles.rs).
pub fn login_role(service: &str) -> String {
    let database = std::env::var("PM_DATABASE").expect("PM_DATABASE");
    format!(
        "{database}_{service}_{}",
        kept(&format!("{service}-db.login"))
    )
}

/// The platform's Redis user (its key prefix without the colon) and its password now.
pub fn redis_user() -> (String, String) {
    let prefix = std::env::var("PM_KEY_PREFIX").expect("PM_KEY_PREFIX");
    (
        prefix.trim_end_matches(':').to_string(),
        kept("redis.password"),
    )
}

/// What `cmd` printed on stdout and stderr, and whether it succeeded.
pub fn output_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("the client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// `sql` run by psql as `role` in the stack's database. (This machine's Postgres trusts loopback
/// connections, so no password is given; whether the role may log in at all is still checked.)
pub fn psql_as(role: &str, sql: &str) -> (bool, String) {
    let database = std::env::var("PM_DATABASE").expect("PM_DATABASE");
    output_of(Command::new("psql").args([
        "-h",
        "127.0.0.1",
        "-U",
        role,
        "-d",
        &database,
        "-qtAc",
        sql,
    ]))
}

/// A Redis command as `user` with `password`.
pub fn redis_as(user: &str, password: &str, args: &[&str]) -> (bool, String) {
    output_of(
        Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "--no-auth-warning",
                "--user",
                user,
                "--pass",
                password,
            ])
            .args(args),
    )
}
