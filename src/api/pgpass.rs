//! libpq's password file (`~/.pgpass`): locating it, refusing it when other
//! users can read it, and finding the password for a connection.
//!
//! The matching is kept a pure function over the file's bytes so it can be
//! tested on every target without touching the file system.

use std::path::{Path, PathBuf};

/// What a password-file line is matched against. Every field is compared as
/// text, exactly as libpq does (the port is `"5432"`, not a number).
pub(crate) struct PgpassQuery<'a> {
    /// Host names to accept: one name, or for a Unix socket directory the
    /// directory and `localhost`.
    pub(crate) hosts: &'a [&'a str],
    pub(crate) port: &'a str,
    pub(crate) dbname: &'a str,
    pub(crate) user: &'a str,
}

/// The password of the first line matching `query`, or `None`.
///
/// Lines are `hostname:port:database:username:password`; a field that is
/// exactly `*` matches anything, `\:` and `\\` stand for `:` and `\`, and
/// lines starting with `#` are comments. The password field ends at the next
/// unescaped `:` so that files written for future libpq versions with extra
/// fields still work.
pub(crate) fn find_password(contents: &[u8], query: &PgpassQuery<'_>) -> Option<Vec<u8>> {
    contents
        .split(|&b| b == b'\n')
        .map(strip_trailing_crlf)
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .find_map(|line| match_line(line, query))
}

fn strip_trailing_crlf(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = line {
        line = rest;
    }
    line
}

fn match_line(line: &[u8], query: &PgpassQuery<'_>) -> Option<Vec<u8>> {
    let (host, rest) = next_field(line)?;
    if !host.matches_any(query.hosts) {
        return None;
    }
    let (port, rest) = next_field(rest)?;
    let (dbname, rest) = next_field(rest)?;
    let (user, rest) = next_field(rest)?;
    if port.matches(query.port) && dbname.matches(query.dbname) && user.matches(query.user) {
        Some(unescape_password(rest))
    } else {
        None
    }
}

enum Field {
    Any,
    Exact(Vec<u8>),
}

impl Field {
    fn matches(&self, token: &str) -> bool {
        match self {
            Field::Any => true,
            Field::Exact(bytes) => bytes == token.as_bytes(),
        }
    }

    fn matches_any(&self, tokens: &[&str]) -> bool {
        tokens.iter().any(|t| self.matches(t))
    }
}

/// Splits off one `:`-terminated field. `None` when the line ends first: a
/// line with too few fields never matches (libpq behaves the same).
fn next_field(s: &[u8]) -> Option<(Field, &[u8])> {
    // libpq only treats `*` as a wildcard when it is the whole field, so an
    // escaped `\*` or a `*` inside a name is literal.
    if let Some(rest) = s.strip_prefix(b"*:") {
        return Some((Field::Any, rest));
    }
    let mut out = Vec::new();
    let mut iter = s.iter().enumerate();
    while let Some((i, &b)) = iter.next() {
        match b {
            b'\\' => out.push(*iter.next()?.1),
            b':' => return Some((Field::Exact(out), s.get(i + 1..).unwrap_or_default())),
            _ => out.push(b),
        }
    }
    None
}

fn unescape_password(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut iter = s.iter();
    while let Some(&b) = iter.next() {
        match b {
            // A trailing lone backslash is kept, as libpq does.
            b'\\' => out.push(iter.next().copied().unwrap_or(b'\\')),
            b':' => break,
            _ => out.push(b),
        }
    }
    out
}

/// Where the password file is: an explicit `passfile`, else `PGPASSFILE`,
/// else `$HOME/.pgpass`.
pub(crate) fn password_file_path(
    passfile: Option<&Path>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if let Some(p) = passfile {
        return Some(p.to_path_buf());
    }
    if let Some(p) = lookup("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = lookup("HOME").filter(|h| !h.is_empty())?;
    Some(Path::new(&home).join(".pgpass"))
}

/// The file's contents, or `None` when it is missing, unreadable, not a plain
/// file, or (on Unix) accessible by group or others. A missing file is the
/// normal case and is silent.
pub(crate) fn read_password_file(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            path = %path.display(),
            "password file is not a plain file; ignoring it"
        );
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Same mask as libpq (S_IRWXG | S_IRWXO): a password file other
        // users can see is treated as compromised rather than used.
        if meta.permissions().mode() & 0o077 != 0 {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                path = %path.display(),
                "password file has group or world access; ignoring it \
                 (permissions should be u=rw (0600) or less)"
            );
            return None;
        }
    }
    std::fs::read(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>(hosts: &'a [&'a str], port: &'a str, db: &'a str, user: &'a str) -> PgpassQuery<'a> {
        PgpassQuery {
            hosts,
            port,
            dbname: db,
            user,
        }
    }

    fn find(contents: &str, query: &PgpassQuery<'_>) -> Option<String> {
        find_password(contents.as_bytes(), query).map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn exact_match() {
        let file = "db.example:5432:shop:app:s3cret\n";
        assert_eq!(
            find(file, &q(&["db.example"], "5432", "shop", "app")).as_deref(),
            Some("s3cret")
        );
        assert_eq!(find(file, &q(&["other"], "5432", "shop", "app")), None);
        assert_eq!(find(file, &q(&["db.example"], "5433", "shop", "app")), None);
        assert_eq!(
            find(file, &q(&["db.example"], "5432", "other", "app")),
            None
        );
        assert_eq!(
            find(file, &q(&["db.example"], "5432", "shop", "other")),
            None
        );
    }

    #[test]
    fn wildcards() {
        let file = "*:*:*:app:any\n";
        assert_eq!(
            find(file, &q(&["h"], "1", "d", "app")).as_deref(),
            Some("any")
        );
        assert_eq!(find(file, &q(&["h"], "1", "d", "bob")), None);
        let file = "*:5433:*:*:port-only\n";
        assert_eq!(
            find(file, &q(&["h"], "5433", "d", "u")).as_deref(),
            Some("port-only")
        );
        assert_eq!(find(file, &q(&["h"], "5432", "d", "u")), None);
    }

    #[test]
    fn star_inside_or_escaped_is_literal() {
        let file = "db*:*:*:*:prefix\n\\*:*:*:*:escaped\n";
        assert_eq!(find(file, &q(&["db1"], "5432", "d", "u")), None);
        assert_eq!(
            find(file, &q(&["db*"], "5432", "d", "u")).as_deref(),
            Some("prefix")
        );
        assert_eq!(find(file, &q(&["x"], "5432", "d", "u")), None);
        assert_eq!(
            find(file, &q(&["*"], "5432", "d", "u")).as_deref(),
            Some("escaped")
        );
    }

    #[test]
    fn first_match_wins() {
        let file = "h:5432:d:u:first\nh:5432:d:u:second\n*:*:*:*:fallback\n";
        assert_eq!(
            find(file, &q(&["h"], "5432", "d", "u")).as_deref(),
            Some("first")
        );
        assert_eq!(
            find(file, &q(&["x"], "5432", "d", "u")).as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn escapes_in_fields_and_password() {
        let file = "my\\:host:5432:d\\\\b:u:pa\\:ss\\\\word\n";
        assert_eq!(
            find(file, &q(&["my:host"], "5432", "d\\b", "u")).as_deref(),
            Some("pa:ss\\word")
        );
        assert_eq!(find(file, &q(&["my"], "5432", "d\\b", "u")), None);
    }

    #[test]
    fn password_ends_at_unescaped_colon_and_keeps_trailing_backslash() {
        assert_eq!(
            find("h:1:d:u:pw:extra-field\n", &q(&["h"], "1", "d", "u")).as_deref(),
            Some("pw")
        );
        assert_eq!(
            find("h:1:d:u:pw\\", &q(&["h"], "1", "d", "u")).as_deref(),
            Some("pw\\")
        );
        assert_eq!(
            find("h:1:d:u:", &q(&["h"], "1", "d", "u")).as_deref(),
            Some("")
        );
    }

    #[test]
    fn comments_blank_lines_crlf_and_short_lines() {
        let file = "# h:1:d:u:commented\n\nh:1:d\nh:1:d:u:good\r\n";
        assert_eq!(
            find(file, &q(&["h"], "1", "d", "u")).as_deref(),
            Some("good")
        );
        // A commented-out line must not match even when everything else would.
        assert_eq!(find("#h:1:d:u:x\n", &q(&["#h"], "1", "d", "u")), None);
    }

    #[test]
    fn any_of_several_host_names() {
        let file = "localhost:5432:d:u:local\n";
        assert_eq!(
            find(file, &q(&["/run/pg", "localhost"], "5432", "d", "u")).as_deref(),
            Some("local")
        );
        let file = "/run/pg:5432:d:u:by-path\nlocalhost:5432:d:u:local\n";
        assert_eq!(
            find(file, &q(&["/run/pg", "localhost"], "5432", "d", "u")).as_deref(),
            Some("by-path")
        );
    }

    #[test]
    fn non_utf8_password_is_kept_as_bytes() {
        let file = b"h:1:d:u:\xff\xfe\n";
        assert_eq!(
            find_password(file, &q(&["h"], "1", "d", "u")),
            Some(vec![0xff, 0xfe])
        );
    }

    #[test]
    fn path_resolution_order() {
        let env = |k: &str| match k {
            "PGPASSFILE" => Some("/etc/pgpass".to_string()),
            "HOME" => Some("/home/app".to_string()),
            _ => None,
        };
        assert_eq!(
            password_file_path(Some(Path::new("/explicit")), env),
            Some(PathBuf::from("/explicit"))
        );
        assert_eq!(
            password_file_path(None, env),
            Some(PathBuf::from("/etc/pgpass"))
        );
        let home_only = |k: &str| (k == "HOME").then(|| "/home/app".to_string());
        assert_eq!(
            password_file_path(None, home_only),
            Some(PathBuf::from("/home/app/.pgpass"))
        );
        assert_eq!(password_file_path(None, |_| None), None);
    }

    #[test]
    fn missing_file_is_silent() {
        assert_eq!(
            read_password_file(Path::new("/nonexistent/wasi-pg-client/.pgpass")),
            None
        );
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_accessible_file_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!(
            "wasi-pg-client-pgpass-perms-{}",
            std::process::id()
        ));
        assert!(std::fs::write(&path, "*:*:*:*:pw\n").is_ok());
        let set = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        assert!(set(0o600).is_ok());
        assert_eq!(
            read_password_file(&path).as_deref(),
            Some(&b"*:*:*:*:pw\n"[..])
        );
        assert!(set(0o644).is_ok());
        assert_eq!(read_password_file(&path), None);
        assert!(set(0o620).is_ok());
        assert_eq!(read_password_file(&path), None);
        let _ = std::fs::remove_file(&path);
    }
}
