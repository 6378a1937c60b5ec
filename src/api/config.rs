//! Connection settings: parsed from a URI, a libpq conninfo string or PG*
//! environment variables, or built field by field.

use std::path::PathBuf;
use std::time::Duration;

use crate::PgError;

/// libpq's `sslmode`: whether and how TLS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS if the server insists.
    Allow,
    /// TLS if the server supports it, plaintext otherwise.
    Prefer,
    /// TLS required, certificate not verified.
    Require,
    /// TLS required, certificate chain verified, host name not checked.
    VerifyCa,
    /// TLS required, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// Whether this mode refuses to run without TLS.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl Default for SslMode {
    /// `VerifyFull` with the `tls` feature, `Disable` without it.
    fn default() -> Self {
        if cfg!(feature = "tls") {
            SslMode::VerifyFull
        } else {
            SslMode::Disable
        }
    }
}

/// Where a server lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A host name or IP address literal (IPv6 without brackets).
    Tcp(String),
    /// A directory holding the server's Unix-domain socket
    /// (`.s.PGSQL.<port>` inside it).
    Unix(PathBuf),
}

/// Default cap on one backend message: 1 GiB, the server's own field limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 30;
/// Default number of prepared statements kept per connection.
pub const DEFAULT_STATEMENT_CACHE_SIZE: usize = 100;

/// Connection settings.
///
/// ```
/// use wasi_pg_client::{Config, SslMode};
/// let config = Config::from_uri("postgresql://app@db.internal:5433/shop?sslmode=disable")?
///     .application_name("checkout");
/// assert_eq!(config.get_ports(), &[5433]);
/// assert_eq!(config.get_ssl_mode(), SslMode::Disable);
/// # Ok::<(), wasi_pg_client::PgError>(())
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) hosts: Vec<Host>,
    pub(crate) ports: Vec<u16>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) dbname: Option<String>,
    pub(crate) application_name: Option<String>,
    pub(crate) options: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) ssl_mode: SslMode,
    pub(crate) allow_insecure_auth: bool,
    pub(crate) max_message_size: usize,
    pub(crate) statement_cache_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Settings with every field at its default (no host: `localhost` and the
    /// default port 5432 are used when connecting).
    pub fn new() -> Self {
        Config {
            hosts: Vec::new(),
            ports: Vec::new(),
            user: None,
            password: None,
            dbname: None,
            application_name: None,
            options: None,
            connect_timeout: None,
            ssl_mode: SslMode::default(),
            allow_insecure_auth: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            statement_cache_size: DEFAULT_STATEMENT_CACHE_SIZE,
        }
    }

    /// Parses a `postgres://` / `postgresql://` URI or a libpq
    /// `key=value` conninfo string.
    pub fn from_uri(s: &str) -> Result<Config, PgError> {
        let _ = s;
        Err(PgError::Config("not yet".into()))
    }

    /// Adds a host (name, IP literal, or an absolute Unix socket directory).
    pub fn host(mut self, host: &str) -> Self {
        if host.starts_with('/') {
            self.hosts.push(Host::Unix(PathBuf::from(host)));
        } else {
            self.hosts.push(Host::Tcp(host.to_string()));
        }
        self
    }
    /// Adds a port.
    pub fn port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }
    /// Sets the user name.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }
    /// Sets the password.
    pub fn password(mut self, password: impl AsRef<[u8]>) -> Self {
        self.password = Some(password.as_ref().to_vec());
        self
    }
    /// Sets the database name.
    pub fn dbname(mut self, dbname: &str) -> Self {
        self.dbname = Some(dbname.to_string());
        self
    }
    /// Sets `application_name`.
    pub fn application_name(mut self, name: &str) -> Self {
        self.application_name = Some(name.to_string());
        self
    }
    /// Sets command-line options sent to the server at startup.
    pub fn options(mut self, options: &str) -> Self {
        self.options = Some(options.to_string());
        self
    }
    /// Sets the time allowed for connecting and authenticating, per host.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// Sets the TLS mode.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }
    /// Allows cleartext-password and MD5 authentication over a connection
    /// that is not encrypted. Off by default: both expose the password (or
    /// a replayable hash) to anyone on the path.
    pub fn allow_insecure_auth(mut self, allow: bool) -> Self {
        self.allow_insecure_auth = allow;
        self
    }
    /// Sets the largest backend message accepted (default 1 GiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// Sets how many prepared statements the connection keeps (default 100;
    /// 0 uses unnamed statements only, safe behind PgBouncer in transaction
    /// mode).
    pub fn statement_cache_size(mut self, size: usize) -> Self {
        self.statement_cache_size = size;
        self
    }

    /// The hosts, in the order they are tried.
    pub fn get_hosts(&self) -> &[Host] {
        &self.hosts
    }
    /// The ports (one for all hosts, or one per host).
    pub fn get_ports(&self) -> &[u16] {
        &self.ports
    }
    /// The user name.
    pub fn get_user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    /// The password.
    pub fn get_password(&self) -> Option<&[u8]> {
        self.password.as_deref()
    }
    /// The database name.
    pub fn get_dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }
    /// `application_name`.
    pub fn get_application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }
    /// Startup options.
    pub fn get_options(&self) -> Option<&str> {
        self.options.as_deref()
    }
    /// The connect timeout.
    pub fn get_connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }
    /// The TLS mode.
    pub fn get_ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }
    /// Whether cleartext/MD5 over plaintext is allowed.
    pub fn get_allow_insecure_auth(&self) -> bool {
        self.allow_insecure_auth
    }
    /// The largest backend message accepted.
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size
    }
    /// The statement cache size.
    pub fn get_statement_cache_size(&self) -> usize {
        self.statement_cache_size
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("ports", &self.ports)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("options", &self.options)
            .field("connect_timeout", &self.connect_timeout)
            .field("ssl_mode", &self.ssl_mode)
            .field("allow_insecure_auth", &self.allow_insecure_auth)
            .field("max_message_size", &self.max_message_size)
            .field("statement_cache_size", &self.statement_cache_size)
            .finish()
    }
}
