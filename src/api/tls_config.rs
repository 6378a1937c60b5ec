//! TLS and authentication settings, with libpq's names and meanings:
//! `sslrootcert`, `sslcert`/`sslkey`, `sslnegotiation`, `channel_binding`,
//! `require_auth`.

use std::path::PathBuf;

use crate::PgError;

/// PEM data given directly or as a file to read when connecting.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemSource {
    /// PEM bytes.
    Pem(Vec<u8>),
    /// A PEM file (on wasm32-wasip2 the directory must be preopened, e.g.
    /// wasmtime's `--dir`).
    File(PathBuf),
}

impl std::fmt::Debug for PemSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Key material never reaches logs.
            PemSource::Pem(bytes) => write!(f, "Pem(<{} bytes>)", bytes.len()),
            PemSource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl PemSource {
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn load(&self, what: &str) -> Result<Vec<u8>, PgError> {
        match self {
            PemSource::Pem(bytes) => Ok(bytes.clone()),
            PemSource::File(path) => std::fs::read(path).map_err(|e| {
                PgError::Config(format!("cannot read {what} {}: {e}", path.display()))
            }),
        }
    }
}

/// Which certificate authorities the server's certificate is checked
/// against (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RootCerts {
    /// The Mozilla roots compiled in (webpki-roots). The default.
    #[default]
    WebPki,
    /// The platform's trust store (`sslrootcert=system`; native builds only).
    System,
    /// Only these CA certificates.
    Custom(PemSource),
}

/// How TLS is started (`sslnegotiation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslNegotiation {
    /// SSLRequest first, then TLS if the server agrees (every server).
    #[default]
    Postgres,
    /// TLS from the first byte, with ALPN `postgresql` (PostgreSQL 17+):
    /// saves a round trip. Needs `sslmode=require` or stronger.
    Direct,
}

/// Whether SCRAM binds to the TLS channel (`channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// Never bind (plain SCRAM-SHA-256).
    Disable,
    /// Bind (SCRAM-SHA-256-PLUS) when TLS is on and the server offers it.
    #[default]
    Prefer,
    /// Refuse to authenticate without channel binding.
    Require,
}

/// An authentication method, as `require_auth` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// Cleartext password.
    Password,
    /// MD5 password hash.
    Md5,
    /// SCRAM-SHA-256 (with or without channel binding).
    ScramSha256,
    /// No authentication exchange at all (trust, or a client certificate).
    None,
}

/// libpq's `require_auth`: the methods the server may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequireAuth {
    methods: Vec<AuthMethod>,
    /// `!method` lists say which methods are refused instead.
    negated: bool,
}

impl RequireAuth {
    /// Parses `scram-sha-256,none` or `!password,!md5`.
    pub(crate) fn parse(spec: &str) -> Result<RequireAuth, PgError> {
        let mut methods = Vec::new();
        let mut negated = None;
        for item in spec.split(',') {
            let item = item.trim();
            let (neg, name) = match item.strip_prefix('!') {
                Some(name) => (true, name),
                None => (false, item),
            };
            if *negated.get_or_insert(neg) != neg {
                return Err(PgError::Config(format!(
                    "require_auth \"{spec}\" mixes allowed and refused (!) methods"
                )));
            }
            methods.push(match name {
                "password" => AuthMethod::Password,
                "md5" => AuthMethod::Md5,
                "scram-sha-256" => AuthMethod::ScramSha256,
                "none" => AuthMethod::None,
                other => {
                    return Err(PgError::Config(format!(
                        "require_auth: unknown or unsupported method \"{other}\" \
                         (password, md5, scram-sha-256, none)"
                    )))
                }
            });
        }
        Ok(RequireAuth {
            methods,
            negated: negated.unwrap_or(false),
        })
    }

    pub(crate) fn allows(&self, method: AuthMethod) -> bool {
        self.methods.contains(&method) != self.negated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_auth_lists() {
        let r = RequireAuth::parse("scram-sha-256,none").unwrap();
        assert!(r.allows(AuthMethod::ScramSha256) && r.allows(AuthMethod::None));
        assert!(!r.allows(AuthMethod::Md5));
        let r = RequireAuth::parse("!password,!md5").unwrap();
        assert!(!r.allows(AuthMethod::Password) && r.allows(AuthMethod::ScramSha256));
        assert!(RequireAuth::parse("md5,!password").is_err());
        assert!(RequireAuth::parse("gss").is_err());
    }

    #[test]
    fn key_bytes_never_print() {
        let s = format!(
            "{:?}",
            PemSource::Pem(b"-----BEGIN PRIVATE KEY-----".to_vec())
        );
        assert!(!s.contains("PRIVATE"), "{s}");
    }
}
