//! Connection settings: parsed from a URI, a libpq conninfo string or PG*
//! environment variables, or built field by field.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::pgpass;
use crate::api::tls_config::{ChannelBinding, PemSource, RequireAuth, RootCerts, SslNegotiation};
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
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
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

/// The port used when none is given.
const DEFAULT_PORT: u16 = 5432;

/// Connection settings.
///
/// Nothing is read from the environment or the password file implicitly:
/// call [`Config::with_env_defaults`] and [`Config::with_pgpass`] to ask for
/// libpq's fallbacks.
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
    pub(crate) auto_reconnect: bool,
    pub(crate) passfile: Option<PathBuf>,
    pub(crate) root_certs: RootCerts,
    pub(crate) client_cert: Option<(PemSource, PemSource)>,
    pub(crate) ssl_negotiation: SslNegotiation,
    pub(crate) channel_binding: ChannelBinding,
    pub(crate) require_auth: Option<RequireAuth>,
    pub(crate) accept_invalid_certs: bool,
    pub(crate) query_timeout: Option<Duration>,
    explicit: Explicit,
}

/// Which defaults were set on purpose. `ssl_mode` always holds a value and
/// `connect_timeout = None` can mean "explicitly no timeout", so without this
/// `with_env_defaults` could not tell "unset" from "set to the default", and
/// libpq lets the environment fill only options that were not given.
#[derive(Clone, Copy, Default)]
struct Explicit {
    ssl_mode: bool,
    connect_timeout: bool,
    /// `application_name` came from `fallback_application_name`, which
    /// libpq ranks below `PGAPPNAME`.
    application_name_is_fallback: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl std::str::FromStr for Config {
    type Err = PgError;

    /// Same as [`Config::from_uri`]: a URI or a conninfo string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Config::from_uri(s)
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
            auto_reconnect: false,
            passfile: None,
            root_certs: RootCerts::default(),
            client_cert: None,
            ssl_negotiation: SslNegotiation::default(),
            channel_binding: ChannelBinding::default(),
            require_auth: None,
            accept_invalid_certs: false,
            query_timeout: None,
            explicit: Explicit::default(),
        }
    }

    /// Parses a `postgres://` / `postgresql://` URI or a libpq
    /// `key=value` conninfo string.
    ///
    /// The URI form is libpq's:
    /// `postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname][?param=value&...]`.
    /// Hosts are names, IPv4 addresses, `[IPv6]` literals, or percent-encoded
    /// Unix socket directories (`%2Fvar%2Frun%2Fpostgresql`). User, password,
    /// hosts, database name and query parameters are percent-decoded. Query
    /// parameters use libpq's names: `host`, `hostaddr`, `port`, `user`,
    /// `password`, `dbname`, `sslmode`, `application_name`,
    /// `fallback_application_name`, `connect_timeout`, `options`,
    /// `passfile`, `sslrootcert` (a file, or `system`), `sslcert` and
    /// `sslkey` (files, given together), `sslnegotiation`,
    /// `channel_binding`, `require_auth`, plus this crate's
    /// `allow_insecure_auth`, `accept_invalid_certs`, `query_timeout`
    /// (seconds), `statement_cache_size`, `max_message_size` and
    /// `auto_reconnect`. `ssl=true`
    /// means `sslmode=require`, as in libpq. Options for features this crate
    /// does not have yet (`target_session_attrs`, `keepalives*`,
    /// `gssencmode`, `sslcompression`) are accepted and ignored; any other
    /// name is an error.
    ///
    /// A string that does not start with a URI scheme is parsed with
    /// [`Config::from_conninfo`].
    ///
    /// ```
    /// use wasi_pg_client::{Config, Host, SslMode};
    /// let config = Config::from_uri(
    ///     "postgresql://app:p%40ss@[::1]:5433,replica.internal/shop?sslmode=require&connect_timeout=5",
    /// )?;
    /// assert_eq!(config.get_user(), Some("app"));
    /// assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
    /// assert_eq!(
    ///     config.get_hosts(),
    ///     &[Host::Tcp("::1".into()), Host::Tcp("replica.internal".into())]
    /// );
    /// assert_eq!(config.get_ports(), &[5433, 5432]);
    /// assert_eq!(config.get_dbname(), Some("shop"));
    /// assert_eq!(config.get_ssl_mode(), SslMode::Require);
    ///
    /// let local = Config::from_uri("postgresql://%2Fvar%2Frun%2Fpostgresql/shop")?;
    /// assert_eq!(local.get_hosts(), &[Host::Unix("/var/run/postgresql".into())]);
    ///
    /// let conninfo = Config::from_uri("host=localhost user=app")?;
    /// assert_eq!(conninfo.get_user(), Some("app"));
    /// # Ok::<(), wasi_pg_client::PgError>(())
    /// ```
    pub fn from_uri(s: &str) -> Result<Config, PgError> {
        let trimmed = s.trim();
        match split_scheme(trimmed) {
            Some((scheme, rest)) => {
                if scheme.eq_ignore_ascii_case("postgresql")
                    || scheme.eq_ignore_ascii_case("postgres")
                {
                    parse_uri(trimmed, rest)
                } else {
                    Err(config_error(format!(
                        "unsupported URI scheme \"{scheme}://\" (expected \"postgresql://\" or \"postgres://\")"
                    )))
                }
            }
            None => Config::from_conninfo(s),
        }
    }

    /// Parses a libpq conninfo string: `key=value` pairs separated by
    /// whitespace.
    ///
    /// Whitespace around `=` is allowed. A value is either unquoted (it ends
    /// at whitespace) or single-quoted (it may contain whitespace); in both,
    /// a backslash makes the next character literal, so `\'` and `\\` stand
    /// for `'` and `\`. The keys are the query parameter names listed on
    /// [`Config::from_uri`]. `host` and `port` take comma-separated lists; a
    /// host starting with `/` is a Unix socket directory. An empty string
    /// gives the default settings.
    ///
    /// ```
    /// use wasi_pg_client::{Config, Host, SslMode};
    /// let config = Config::from_conninfo(
    ///     r"host=/run/postgresql,db2 port=5432,5433 user = app password='it\'s a secret' sslmode=disable",
    /// )?;
    /// assert_eq!(
    ///     config.get_hosts(),
    ///     &[Host::Unix("/run/postgresql".into()), Host::Tcp("db2".into())]
    /// );
    /// assert_eq!(config.get_ports(), &[5432, 5433]);
    /// assert_eq!(config.get_user(), Some("app"));
    /// assert_eq!(config.get_password(), Some(&b"it's a secret"[..]));
    /// assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    /// # Ok::<(), wasi_pg_client::PgError>(())
    /// ```
    pub fn from_conninfo(s: &str) -> Result<Config, PgError> {
        let mut parser = Parser::new(Source::Conninfo);
        let mut chars = s.char_indices().peekable();
        loop {
            while chars.next_if(|&(_, c)| is_space(c)).is_some() {}
            let Some(&(key_start, first)) = chars.peek() else {
                break;
            };
            if first == '=' {
                return Err(config_error(format!(
                    "expected an option name at position {} of the connection string, found \"=\"",
                    char_position(s, key_start)
                )));
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|&(_, c)| c != '=' && !is_space(c)) {
                key.push(c);
            }
            while chars.next_if(|&(_, c)| is_space(c)).is_some() {}
            if chars.next_if(|&(_, c)| c == '=').is_none() {
                return Err(config_error(format!(
                    "missing \"=\" after \"{key}\" (at position {}) in the connection string",
                    char_position(s, key_start)
                )));
            }
            while chars.next_if(|&(_, c)| is_space(c)).is_some() {}
            let mut value = String::new();
            if let Some((quote_at, _)) = chars.next_if(|&(_, c)| c == '\'') {
                let unterminated = || {
                    config_error(format!(
                        "unterminated quoted value for \"{key}\" (quote at position {}) in the connection string",
                        char_position(s, quote_at)
                    ))
                };
                loop {
                    match chars.next() {
                        None => return Err(unterminated()),
                        Some((_, '\'')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c)) => value.push(c),
                            None => return Err(unterminated()),
                        },
                        Some((_, c)) => value.push(c),
                    }
                }
            } else {
                while let Some((_, c)) = chars.next_if(|&(_, c)| !is_space(c)) {
                    if c == '\\' {
                        // libpq drops a backslash at the very end of the string.
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    } else {
                        value.push(c);
                    }
                }
            }
            parser.apply(&key, value.as_bytes())?;
        }
        parser.finish()
    }

    /// Settings from libpq's environment variables only: `PGHOST`,
    /// `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGSSLMODE` and `PGOPTIONS`.
    ///
    /// Same as `Config::new().with_env_defaults()`.
    pub fn from_env() -> Result<Config, PgError> {
        Config::new().with_env_defaults()
    }

    /// Fills every field that is still unset from the environment variables
    /// listed on [`Config::from_env`], the way libpq falls back to them.
    /// Fields already set (by a URI, a conninfo string or a setter) win.
    ///
    /// Hosts come from `PGHOSTADDR` if set, else `PGHOST`, and only when the
    /// configuration has no host at all. Empty variables count as unset. A
    /// variable that is not valid UTF-8 or does not parse is an error naming
    /// the variable.
    pub fn with_env_defaults(self) -> Result<Config, PgError> {
        for var in ENV_VARS {
            if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(var) {
                return Err(config_error(format!(
                    "environment variable {var} is not valid UTF-8"
                )));
            }
        }
        self.with_env_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::with_env_defaults`] with the variables read through
    /// `lookup`, so tests need not change the process environment.
    pub(crate) fn with_env_lookup(
        self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, PgError> {
        let get = |var: &str| lookup(var).filter(|v| !v.is_empty());
        let config = self;
        let fill_hosts = config.hosts.is_empty();
        let fill_ports = config.ports.is_empty();
        let fill_user = config.user.is_none();
        let fill_password = config.needs_password();
        let fill_dbname = config.dbname.is_none();
        let fill_app =
            config.application_name.is_none() || config.explicit.application_name_is_fallback;
        let fill_timeout = !config.explicit.connect_timeout;
        let fill_ssl = !config.explicit.ssl_mode;
        let fill_options = config.options.is_none();

        let mut parser = Parser::new(Source::Env("PGHOST"));
        parser.config = config;
        let set = |parser: &mut Parser, fill: bool, var: &'static str, key: &str| match get(var)
            .filter(|_| fill)
        {
            Some(value) => {
                parser.source = Source::Env(var);
                parser.apply(key, value.as_bytes())
            }
            None => Ok(()),
        };
        if fill_hosts {
            set(&mut parser, true, "PGHOST", "host")?;
            set(&mut parser, true, "PGHOSTADDR", "hostaddr")?;
        }
        set(&mut parser, fill_ports, "PGPORT", "port")?;
        set(&mut parser, fill_user, "PGUSER", "user")?;
        set(&mut parser, fill_password, "PGPASSWORD", "password")?;
        set(&mut parser, fill_dbname, "PGDATABASE", "dbname")?;
        set(&mut parser, fill_app, "PGAPPNAME", "application_name")?;
        set(
            &mut parser,
            fill_timeout,
            "PGCONNECT_TIMEOUT",
            "connect_timeout",
        )?;
        set(&mut parser, fill_ssl, "PGSSLMODE", "sslmode")?;
        set(&mut parser, fill_options, "PGOPTIONS", "options")?;
        parser.finish()
    }

    /// Looks the password up in libpq's password file when none is set (or
    /// it is empty, as libpq treats it).
    ///
    /// The file is the `passfile` option if given, else `PGPASSFILE`, else
    /// `$HOME/.pgpass`. Its lines are `hostname:port:database:username:password`
    /// with `*` matching anything and `\:` / `\\` escapes; the first matching
    /// line wins. The key is the first host (a Unix socket directory matches
    /// its path or `localhost`; no host matches `localhost`), the first port
    /// (default 5432), the database (default: the user name) and the user.
    /// Without a user name there is nothing to match and the config is
    /// returned unchanged.
    ///
    /// A missing or unreadable file is silently skipped. On Unix a file that
    /// group or others can access is skipped (with a `tracing` warning), as
    /// libpq does. Under WASI the file is only found if the host preopened
    /// its directory.
    pub fn with_pgpass(self) -> Config {
        if !self.needs_password() {
            return self;
        }
        let Some(path) =
            pgpass::password_file_path(self.passfile.as_deref(), |v| std::env::var(v).ok())
        else {
            return self;
        };
        match pgpass::read_password_file(&path) {
            Some(contents) => self.with_pgpass_contents(&contents),
            None => self,
        }
    }

    /// The password-file lookup of [`Config::with_pgpass`] over given file
    /// contents.
    fn with_pgpass_contents(mut self, contents: &[u8]) -> Config {
        if !self.needs_password() {
            return self;
        }
        let Some(user) = self.user.as_deref() else {
            return self;
        };
        let dbname = self.dbname.as_deref().unwrap_or(user);
        let port = self
            .ports
            .first()
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        let unix_dir;
        let hosts: Vec<&str> = match self.hosts.first() {
            None => vec!["localhost"],
            Some(Host::Tcp(name)) => vec![name.as_str()],
            Some(Host::Unix(dir)) => {
                unix_dir = dir.to_string_lossy();
                vec![&*unix_dir, "localhost"]
            }
        };
        let query = pgpass::PgpassQuery {
            hosts: &hosts,
            port: &port,
            dbname,
            user,
        };
        let found = pgpass::find_password(contents, &query);
        if found.is_some() {
            self.password = found;
        }
        self
    }

    /// libpq consults the password file when the password is missing or
    /// empty.
    fn needs_password(&self) -> bool {
        self.password.as_deref().is_none_or(<[u8]>::is_empty)
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
        self.explicit.application_name_is_fallback = false;
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
        self.explicit.connect_timeout = true;
        self
    }
    /// Sets the TLS mode.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self.explicit.ssl_mode = true;
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
    /// Sets how many prepared statements the connection keeps (default 100).
    /// With 0 only unnamed statements are used, safe behind PgBouncer in
    /// transaction mode: each `query_params` describes the statement, then
    /// parses it again with its bind (two round trips).
    pub fn statement_cache_size(mut self, size: usize) -> Self {
        self.statement_cache_size = size;
        self
    }
    /// Reconnects by itself when the connection breaks (default off): the
    /// next call on any clone opens a new session, sets the parameters set
    /// with `set_param` again and listens to the same channels, then runs.
    /// Calls that were on their way when it broke fail (whether they ran is
    /// unknown), and so does a transaction, cursor or COPY that was open:
    /// they belonged to the old session. Subscriptions carry on, told once
    /// that notifications sent meanwhile were missed. A connection closed
    /// with [`Connection::close`](crate::Connection::close) stays closed.
    /// Only [`Connection::connect`](crate::Connection::connect) can
    /// reconnect: with `connect_with_transport` the transport is yours.
    /// A [`CancelToken`](crate::CancelToken) taken before a reconnection
    /// still names the old backend, so cancelling through it does nothing;
    /// take a new one (query timeouts always use the current session).
    pub fn auto_reconnect(mut self, reconnect: bool) -> Self {
        self.auto_reconnect = reconnect;
        self
    }
    /// Sets the password file consulted by [`Config::with_pgpass`] instead
    /// of `PGPASSFILE` / `~/.pgpass` (libpq's `passfile`).
    pub fn passfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.passfile = Some(path.into());
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
    /// Whether the connection reconnects by itself when it breaks.
    pub fn get_auto_reconnect(&self) -> bool {
        self.auto_reconnect
    }
    /// The password file set with [`Config::passfile`] or the `passfile`
    /// option.
    pub fn get_passfile(&self) -> Option<&std::path::Path> {
        self.passfile.as_deref()
    }

    /// Sets the CA certificates the server's certificate must chain to
    /// (`sslrootcert`; the default is the compiled-in Mozilla roots).
    pub fn ssl_root_certs(mut self, roots: RootCerts) -> Self {
        self.root_certs = roots;
        self
    }
    /// Trusts only the CA certificates in these PEM bytes.
    pub fn ssl_root_cert_pem(self, pem: impl Into<Vec<u8>>) -> Self {
        self.ssl_root_certs(RootCerts::Custom(PemSource::Pem(pem.into())))
    }
    /// Presents a client certificate (`sslcert`/`sslkey`), e.g. for `cert`
    /// authentication. The key is never shown by `Debug`.
    pub fn ssl_client_cert(mut self, cert: PemSource, key: PemSource) -> Self {
        self.client_cert = Some((cert, key));
        self
    }
    /// Sets how TLS is started (`sslnegotiation`).
    pub fn ssl_negotiation(mut self, negotiation: SslNegotiation) -> Self {
        self.ssl_negotiation = negotiation;
        self
    }
    /// Sets whether SCRAM binds to the TLS channel (`channel_binding`).
    pub fn channel_binding(mut self, mode: ChannelBinding) -> Self {
        self.channel_binding = mode;
        self
    }
    /// Restricts the authentication methods the server may ask for, with
    /// libpq's `require_auth` syntax: `scram-sha-256`, `scram-sha-256,none`,
    /// `!password,!md5`. Any other request is refused.
    pub fn require_auth(mut self, spec: &str) -> Result<Self, PgError> {
        self.require_auth = Some(RequireAuth::parse(spec)?);
        Ok(self)
    }
    /// **Development only.** Accepts any server certificate (expired,
    /// self-signed, for another host) while still encrypting: anyone on the
    /// path can impersonate the server. Never enable this in production.
    pub fn accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// Fails each query that runs longer than `limit` with
    /// `PgError::Timeout`, after asking the server to cancel it (a client
    /// side `statement_timeout` that also covers a stuck network).
    /// `Connection::with_query_timeout` sets it per handle.
    pub fn query_timeout(mut self, limit: Duration) -> Self {
        self.query_timeout = Some(limit);
        self
    }
    /// The query timeout.
    pub fn get_query_timeout(&self) -> Option<Duration> {
        self.query_timeout
    }

    /// The CA certificates the server is checked against.
    pub fn get_ssl_root_certs(&self) -> &RootCerts {
        &self.root_certs
    }
    /// How TLS is started.
    pub fn get_ssl_negotiation(&self) -> SslNegotiation {
        self.ssl_negotiation
    }
    /// The channel binding mode.
    pub fn get_channel_binding(&self) -> ChannelBinding {
        self.channel_binding
    }
    /// Whether any server certificate is accepted.
    pub fn get_accept_invalid_certs(&self) -> bool {
        self.accept_invalid_certs
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
            .field("auto_reconnect", &self.auto_reconnect)
            .field("passfile", &self.passfile)
            .field("root_certs", &self.root_certs)
            .field(
                "client_cert",
                &self.client_cert.as_ref().map(|(cert, _)| (cert, "<key>")),
            )
            .field("ssl_negotiation", &self.ssl_negotiation)
            .field("channel_binding", &self.channel_binding)
            .field("require_auth", &self.require_auth)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

/// The variables `with_env_defaults` reads, checked up front for non-UTF-8
/// values so the lookup closure can stay a plain `Option`.
const ENV_VARS: [&str; 10] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGSSLMODE",
    "PGOPTIONS",
];

fn config_error(message: String) -> PgError {
    PgError::Config(message)
}

/// C `isspace`, which is what libpq splits conninfo strings on (Rust's
/// `is_ascii_whitespace` leaves out vertical tab).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// 1-based character position of byte offset `byte` in `s`, for messages.
fn char_position(s: &str, byte: usize) -> usize {
    s.get(..byte).map_or(byte, |prefix| prefix.chars().count()) + 1
}

/// 1-based character position of `part` (a subslice of `whole`) in `whole`.
fn position_of(whole: &str, part: &str) -> usize {
    let offset = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    char_position(whole, offset)
}

/// `Some((scheme, rest))` when `s` starts with `scheme://` for a
/// syntactically valid RFC 3986 scheme. Conninfo strings never do, because
/// their first token contains `=` before any `://`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
enum Source {
    Uri,
    Conninfo,
    Env(&'static str),
}

/// Accumulates options in any order and resolves the ones that depend on
/// each other (host vs. hostaddr, the fallback application name, the port
/// count) once everything is known.
struct Parser {
    config: Config,
    source: Source,
    hostaddrs: Option<Vec<Host>>,
    fallback_application_name: Option<String>,
    /// `sslcert` and `sslkey` only mean something together.
    ssl_cert: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
}

impl Parser {
    fn new(source: Source) -> Self {
        Parser {
            config: Config::new(),
            source,
            hostaddrs: None,
            fallback_application_name: None,
            ssl_cert: None,
            ssl_key: None,
        }
    }

    /// Names `key` for an error message the way the user wrote it.
    fn origin(&self, key: &str) -> String {
        match self.source {
            Source::Uri => format!("URI query parameter \"{key}\""),
            Source::Conninfo => format!("connection option \"{key}\""),
            Source::Env(var) => format!("environment variable {var}"),
        }
    }

    fn text<'v>(&self, key: &str, value: &'v [u8]) -> Result<&'v str, PgError> {
        std::str::from_utf8(value).map_err(|_| {
            config_error(format!(
                "the value of {} is not valid UTF-8",
                self.origin(key)
            ))
        })
    }

    /// libpq sends an empty user, database or application name as if it
    /// were unset, so they are stored as `None`.
    fn optional_text(&self, key: &str, value: &[u8]) -> Result<Option<String>, PgError> {
        let text = self.text(key, value)?;
        Ok((!text.is_empty()).then(|| text.to_string()))
    }

    fn apply(&mut self, key: &str, value: &[u8]) -> Result<(), PgError> {
        match key {
            "host" => {
                let text = self.text(key, value)?;
                self.config.hosts = parse_host_list(text);
            }
            // Connected to instead of `host` (libpq uses hostaddr for the
            // socket and host only for names); there is no separate field, so
            // the address replaces the host list in `finish`.
            "hostaddr" => {
                let text = self.text(key, value)?;
                let hosts = parse_host_list(text);
                self.hostaddrs = (!hosts.is_empty()).then_some(hosts);
            }
            "port" => {
                let text = self.text(key, value)?;
                self.config.ports = parse_port_list(text, &self.origin(key))?;
            }
            "user" => self.config.user = self.optional_text(key, value)?,
            // Bytes, not text: the server compares password bytes, and a
            // non-UTF-8 password is legal there.
            "password" => {
                self.config.password = (!value.is_empty()).then(|| value.to_vec());
            }
            "dbname" => self.config.dbname = self.optional_text(key, value)?,
            "application_name" => {
                self.config.application_name = self.optional_text(key, value)?;
                self.config.explicit.application_name_is_fallback = false;
            }
            "fallback_application_name" => {
                self.fallback_application_name = self.optional_text(key, value)?;
            }
            "options" => self.config.options = self.optional_text(key, value)?,
            "passfile" => {
                self.config.passfile = self.optional_text(key, value)?.map(PathBuf::from);
            }
            "sslmode" => {
                let text = self.text(key, value)?;
                self.config.ssl_mode = parse_ssl_mode(text, &self.origin(key))?;
                self.config.explicit.ssl_mode = true;
            }
            "connect_timeout" => {
                let text = self.text(key, value)?;
                self.config.connect_timeout = parse_connect_timeout(text, &self.origin(key))?;
                self.config.explicit.connect_timeout = true;
            }
            "allow_insecure_auth" => {
                let text = self.text(key, value)?;
                self.config.allow_insecure_auth = parse_bool(text, &self.origin(key))?;
            }
            "auto_reconnect" => {
                let text = self.text(key, value)?;
                self.config.auto_reconnect = parse_bool(text, &self.origin(key))?;
            }
            "statement_cache_size" => {
                let text = self.text(key, value)?;
                self.config.statement_cache_size = parse_usize(text, &self.origin(key))?;
            }
            "max_message_size" => {
                let text = self.text(key, value)?;
                let size = parse_usize(text, &self.origin(key))?;
                if size == 0 {
                    return Err(config_error(format!(
                        "invalid {} \"0\" (must be at least 1)",
                        self.origin(key)
                    )));
                }
                self.config.max_message_size = size;
            }
            "sslrootcert" => {
                let text = self.text(key, value)?;
                self.config.root_certs = match text {
                    "system" => RootCerts::System,
                    path => RootCerts::Custom(PemSource::File(PathBuf::from(path))),
                };
            }
            "sslcert" => {
                self.ssl_cert = Some(PathBuf::from(self.text(key, value)?));
            }
            "sslkey" => {
                self.ssl_key = Some(PathBuf::from(self.text(key, value)?));
            }
            "sslnegotiation" => {
                self.config.ssl_negotiation = match self.text(key, value)? {
                    "postgres" => SslNegotiation::Postgres,
                    "direct" => SslNegotiation::Direct,
                    other => {
                        return Err(config_error(format!(
                            "invalid {} \"{other}\" (postgres or direct)",
                            self.origin(key)
                        )))
                    }
                };
            }
            "channel_binding" => {
                self.config.channel_binding = match self.text(key, value)? {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    other => {
                        return Err(config_error(format!(
                            "invalid {} \"{other}\" (disable, prefer or require)",
                            self.origin(key)
                        )))
                    }
                };
            }
            "require_auth" => {
                self.config.require_auth = Some(RequireAuth::parse(self.text(key, value)?)?);
            }
            // Seconds, decimals allowed; 0 means none (like connect_timeout).
            "query_timeout" => {
                let text = self.text(key, value)?;
                let seconds: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        config_error(format!(
                            "invalid {} \"{text}\" (seconds, e.g. 2.5)",
                            self.origin(key)
                        ))
                    })?;
                self.config.query_timeout =
                    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds));
            }
            "accept_invalid_certs" => {
                let text = self.text(key, value)?;
                self.config.accept_invalid_certs = parse_bool(text, &self.origin(key))?;
            }
            // Accepted so that connection strings written for libpq keep
            // working, but ignored: the features behind them (session
            // targeting, keepalive tuning, GSSAPI) are not built yet. Remove
            // a key from this list when its feature lands.
            "target_session_attrs"
            | "keepalives"
            | "keepalives_idle"
            | "keepalives_interval"
            | "keepalives_count"
            | "gssencmode"
            | "sslcompression" => {
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    option = key,
                    "ignoring connection option (not supported yet)"
                );
            }
            _ => {
                return Err(config_error(match self.source {
                    Source::Uri => format!("invalid URI query parameter \"{key}\""),
                    _ => format!("invalid connection option \"{key}\""),
                }))
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Config, PgError> {
        if let Some(hostaddrs) = self.hostaddrs.take() {
            self.config.hosts = hostaddrs;
        }
        if self.config.application_name.is_none() {
            if let Some(fallback) = self.fallback_application_name.take() {
                self.config.application_name = Some(fallback);
                self.config.explicit.application_name_is_fallback = true;
            }
        }
        match (self.ssl_cert.take(), self.ssl_key.take()) {
            (Some(cert), Some(key)) => {
                self.config.client_cert = Some((PemSource::File(cert), PemSource::File(key)));
            }
            (None, None) => {}
            _ => {
                return Err(config_error(
                    "sslcert and sslkey must be given together".to_string(),
                ))
            }
        }
        check_port_count(&self.config)?;
        Ok(self.config)
    }
}

/// libpq pairs ports with hosts: either one port for every host or one each.
fn check_port_count(config: &Config) -> Result<(), PgError> {
    let ports = config.ports.len();
    let hosts = config.hosts.len().max(1);
    if ports > 1 && ports != hosts {
        return Err(config_error(format!(
            "could not match {ports} port numbers ({}) to {hosts} hosts",
            config
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    Ok(())
}

/// An empty entry in a list means "the default", which libpq resolves to the
/// local server; here that is `localhost`, matching `Config::new`'s contract.
/// A list that is empty altogether leaves the hosts unset.
fn parse_host_list(text: &str) -> Vec<Host> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split(',').map(host_from_text).collect()
}

fn host_from_text(text: &str) -> Host {
    if text.is_empty() {
        Host::Tcp("localhost".to_string())
    } else if text.starts_with('/') {
        Host::Unix(PathBuf::from(text))
    } else {
        Host::Tcp(text.to_string())
    }
}

/// Empty entries are the default port; an all-empty list leaves the ports
/// unset so a single default applies to every host.
fn parse_port_list(text: &str, origin: &str) -> Result<Vec<u16>, PgError> {
    if text.split(',').all(str::is_empty) {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|p| {
            if p.is_empty() {
                Ok(DEFAULT_PORT)
            } else {
                parse_port(p, origin)
            }
        })
        .collect()
}

fn parse_port(text: &str, origin: &str) -> Result<u16, PgError> {
    // libpq parses ports with strtol and allows surrounding whitespace.
    match text.trim().parse::<i64>() {
        Ok(n) if (1..=65535).contains(&n) => u16::try_from(n).map_err(|_| bad_port(text, origin)),
        _ => Err(bad_port(text, origin)),
    }
}

fn bad_port(text: &str, origin: &str) -> PgError {
    config_error(format!(
        "invalid port \"{text}\" in {origin} (expected a number from 1 to 65535)"
    ))
}

fn parse_ssl_mode(text: &str, origin: &str) -> Result<SslMode, PgError> {
    match text {
        "disable" => Ok(SslMode::Disable),
        "allow" => Ok(SslMode::Allow),
        "prefer" => Ok(SslMode::Prefer),
        "require" => Ok(SslMode::Require),
        "verify-ca" => Ok(SslMode::VerifyCa),
        "verify-full" => Ok(SslMode::VerifyFull),
        _ => Err(config_error(format!(
            "invalid sslmode \"{text}\" in {origin} (expected disable, allow, prefer, require, verify-ca or verify-full)"
        ))),
    }
}

/// libpq semantics: zero or negative means no timeout, and 1 second is
/// raised to 2 because a 1-second timer can fire almost immediately when
/// counted in whole seconds.
fn parse_connect_timeout(text: &str, origin: &str) -> Result<Option<Duration>, PgError> {
    let seconds = text.trim().parse::<i64>().map_err(|_| {
        config_error(format!(
            "invalid connect_timeout \"{text}\" in {origin} (expected a whole number of seconds)"
        ))
    })?;
    Ok(match u64::try_from(seconds) {
        Ok(0) | Err(_) => None,
        Ok(1) => Some(Duration::from_secs(2)),
        Ok(s) => Some(Duration::from_secs(s)),
    })
}

fn parse_bool(text: &str, origin: &str) -> Result<bool, PgError> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(config_error(format!(
            "invalid boolean \"{text}\" in {origin} (expected true, false, 1, 0, yes, no, on or off)"
        ))),
    }
}

fn parse_usize(text: &str, origin: &str) -> Result<usize, PgError> {
    text.trim().parse::<usize>().map_err(|_| {
        config_error(format!(
            "invalid number \"{text}\" in {origin} (expected a non-negative integer)"
        ))
    })
}

/// Which part of a URI a piece came from, for error messages. The password
/// is never echoed back: errors end up in logs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UriPart {
    User,
    Password,
    Host,
    Dbname,
    ParamName,
    ParamValue,
}

impl UriPart {
    fn describe(self) -> &'static str {
        match self {
            UriPart::User => "the user name",
            UriPart::Password => "the password",
            UriPart::Host => "the host",
            UriPart::Dbname => "the database name",
            UriPart::ParamName => "a query parameter name",
            UriPart::ParamValue => "a query parameter value",
        }
    }
}

/// Decodes `%XX` escapes in `raw`, a subslice of `uri`. `%00` is refused
/// because the value ends up in a NUL-terminated protocol field.
fn percent_decode(uri: &str, raw: &str, part: UriPart) -> Result<Vec<u8>, PgError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let decoded = match bytes.get(i + 1..i + 3) {
            Some(&[hi, lo]) => hex_value(hi).zip(hex_value(lo)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        let position = position_of(uri, raw) + char_position(raw, i) - 1;
        match decoded {
            Some(0) => {
                return Err(config_error(format!(
                    "forbidden \"%00\" in {} at position {position} of the URI",
                    part.describe()
                )))
            }
            Some(value) => {
                out.push(value);
                i += 3;
            }
            None if part == UriPart::Password => {
                return Err(config_error(format!(
                    "invalid percent-encoding in the password at position {position} of the URI"
                )))
            }
            None => {
                let token: String = raw.get(i..).unwrap_or_default().chars().take(3).collect();
                return Err(config_error(format!(
                    "invalid percent-encoding \"{token}\" in {} at position {position} of the URI",
                    part.describe()
                )));
            }
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode_str(uri: &str, raw: &str, part: UriPart) -> Result<String, PgError> {
    String::from_utf8(percent_decode(uri, raw, part)?).map_err(|_| {
        config_error(format!(
            "{} at position {} of the URI is not valid UTF-8 after percent-decoding",
            part.describe(),
            position_of(uri, raw)
        ))
    })
}

/// Parses everything after `scheme://`; `rest` is a subslice of `uri` so
/// positions in errors refer to the string the user wrote.
fn parse_uri(uri: &str, rest: &str) -> Result<Config, PgError> {
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (before_query, None),
    };
    let mut parser = Parser::new(Source::Uri);

    // The last '@' rather than libpq's first: a host never contains '@',
    // so this also accepts an unencoded '@' in the password.
    let netloc = match authority.rsplit_once('@') {
        Some((userinfo, netloc)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let user = percent_decode_str(uri, user, UriPart::User)?;
            parser.config.user = (!user.is_empty()).then_some(user);
            if let Some(password) = password {
                let password = percent_decode(uri, password, UriPart::Password)?;
                parser.config.password = (!password.is_empty()).then_some(password);
            }
            netloc
        }
        None => authority,
    };

    parse_netloc(uri, netloc, &mut parser.config)?;

    if let Some(path) = path {
        let dbname = percent_decode_str(uri, path, UriPart::Dbname)?;
        parser.config.dbname = (!dbname.is_empty()).then_some(dbname);
    }

    if let Some(query) = query {
        // libpq tolerates a trailing '&'; empty pairs elsewhere are skipped
        // too rather than rejected, since they carry no option.
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let Some((raw_key, raw_value)) = pair.split_once('=') else {
                return Err(config_error(format!(
                    "missing \"=\" in URI query parameter \"{pair}\" at position {}",
                    position_of(uri, pair)
                )));
            };
            let key = percent_decode_str(uri, raw_key, UriPart::ParamName)?;
            if raw_value.contains('=') {
                return Err(config_error(format!(
                    "extra \"=\" in the value of URI query parameter \"{key}\" at position {} (percent-encode it as %3D)",
                    position_of(uri, raw_value)
                )));
            }
            let value = percent_decode(uri, raw_value, UriPart::ParamValue)?;
            // libpq's JDBC compatibility: `ssl=true` is `sslmode=require`.
            if key == "ssl" && value == b"true" {
                parser.apply("sslmode", b"require")?;
            } else {
                parser.apply(&key, &value)?;
            }
        }
    }
    parser.finish()
}

/// `host[:port][,host[:port]...]`, where a host may be `[IPv6]`.
fn parse_netloc(uri: &str, netloc: &str, config: &mut Config) -> Result<(), PgError> {
    if netloc.is_empty() {
        return Ok(());
    }
    let mut hosts: Vec<Option<Host>> = Vec::new();
    let mut ports: Vec<Option<u16>> = Vec::new();
    let mut rest = netloc;
    loop {
        let after_host = if let Some(inner) = rest.strip_prefix('[') {
            let Some((address, after)) = inner.split_once(']') else {
                return Err(config_error(format!(
                    "unterminated IPv6 address \"{rest}\" at position {} of the URI (missing \"]\")",
                    position_of(uri, rest)
                )));
            };
            if address.is_empty() {
                return Err(config_error(format!(
                    "empty IPv6 address \"[]\" at position {} of the URI",
                    position_of(uri, rest)
                )));
            }
            if let Some(c) = after.chars().next().filter(|c| !matches!(c, ':' | ',')) {
                return Err(config_error(format!(
                    "unexpected character \"{c}\" after IPv6 address at position {} of the URI (expected \":\", \",\" or \"/\")",
                    position_of(uri, after)
                )));
            }
            let address = percent_decode_str(uri, address, UriPart::Host)?;
            hosts.push(Some(Host::Tcp(address)));
            after
        } else {
            let end = rest.find([':', ',']).unwrap_or(rest.len());
            let (raw_host, after) = rest.split_at(end);
            if raw_host.is_empty() {
                hosts.push(None);
            } else {
                let host = percent_decode_str(uri, raw_host, UriPart::Host)?;
                hosts.push(Some(host_from_text(&host)));
            }
            after
        };
        let after_port = match after_host.strip_prefix(':') {
            Some(port_and_rest) => {
                let end = port_and_rest.find(',').unwrap_or(port_and_rest.len());
                let (raw_port, after) = port_and_rest.split_at(end);
                if raw_port.is_empty() {
                    ports.push(None);
                } else {
                    let origin = format!("the URI at position {}", position_of(uri, raw_port));
                    ports.push(Some(parse_port(raw_port, &origin)?));
                }
                after
            }
            None => {
                ports.push(None);
                after_host
            }
        };
        match after_port.strip_prefix(',') {
            Some(next) => rest = next,
            None => break,
        }
    }
    if hosts.len() > 1 || hosts.iter().any(Option::is_some) {
        config.hosts = hosts
            .into_iter()
            .map(|h| h.unwrap_or_else(|| host_from_text("")))
            .collect();
    }
    if ports.iter().any(Option::is_some) {
        config.ports = ports
            .into_iter()
            .map(|p| p.unwrap_or(DEFAULT_PORT))
            .collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        match Config::from_uri(s) {
            Ok(config) => config,
            Err(e) => panic!("{s:?} should parse, got {e}"),
        }
    }

    fn error(s: &str) -> String {
        match Config::from_uri(s) {
            Ok(config) => panic!("{s:?} should fail, got {config:?}"),
            Err(PgError::Config(message)) => message,
            Err(other) => panic!("{s:?} should fail with a Config error, got {other}"),
        }
    }

    /// Asserts the error for `s` mentions every one of `parts`.
    fn assert_error_names(s: &str, parts: &[&str]) {
        let message = error(s);
        for part in parts {
            assert!(
                message.contains(part),
                "error for {s:?} should mention {part:?}: {message}"
            );
        }
    }

    fn tcp(name: &str) -> Host {
        Host::Tcp(name.to_string())
    }

    fn unix(dir: &str) -> Host {
        Host::Unix(PathBuf::from(dir))
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn uri_with_every_part() {
        let c = parse(
            "postgresql://alice:secret@db.example.com:6543/inventory?sslmode=verify-ca\
             &application_name=shop&connect_timeout=10&options=-c%20search_path%3Dapp\
             &allow_insecure_auth=yes&statement_cache_size=0&max_message_size=1048576\
             &passfile=%2Fetc%2Fpgpass&auto_reconnect=on",
        );
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_password(), Some(&b"secret"[..]));
        assert_eq!(c.get_hosts(), &[tcp("db.example.com")]);
        assert_eq!(c.get_ports(), &[6543]);
        assert_eq!(c.get_dbname(), Some("inventory"));
        assert_eq!(c.get_ssl_mode(), SslMode::VerifyCa);
        assert_eq!(c.get_application_name(), Some("shop"));
        assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(c.get_options(), Some("-c search_path=app"));
        assert!(c.get_allow_insecure_auth());
        assert_eq!(c.get_statement_cache_size(), 0);
        assert!(c.get_auto_reconnect());
        assert!(!Config::new().get_auto_reconnect());
        assert_eq!(c.get_max_message_size(), 1 << 20);
        assert_eq!(c.get_passfile(), Some(std::path::Path::new("/etc/pgpass")));
    }

    #[test]
    fn both_schemes_and_minimal_uris() {
        for scheme in ["postgresql", "postgres", "PostgreSQL"] {
            let c = parse(&format!("{scheme}://h/d"));
            assert_eq!(c.get_hosts(), &[tcp("h")]);
            assert_eq!(c.get_dbname(), Some("d"));
        }
        let c = parse("postgresql://");
        assert!(c.get_hosts().is_empty());
        assert!(c.get_ports().is_empty());
        assert_eq!(c.get_user(), None);
        assert_eq!(c.get_dbname(), None);
        let c = parse("postgresql:///mydb");
        assert!(c.get_hosts().is_empty());
        assert_eq!(c.get_dbname(), Some("mydb"));
        let c = parse("postgresql://user@");
        assert_eq!(c.get_user(), Some("user"));
        assert!(c.get_hosts().is_empty());
        let c = parse("postgresql://:5433");
        assert!(c.get_hosts().is_empty());
        assert_eq!(c.get_ports(), &[5433]);
        let c = parse("  postgresql://h  ");
        assert_eq!(c.get_hosts(), &[tcp("h")]);
    }

    #[test]
    fn ipv4_and_ipv6_hosts() {
        let c = parse("postgresql://192.168.0.10:5433/db");
        assert_eq!(c.get_hosts(), &[tcp("192.168.0.10")]);
        assert_eq!(c.get_ports(), &[5433]);
        let c = parse("postgresql://[::1]:5433/db");
        assert_eq!(c.get_hosts(), &[tcp("::1")]);
        assert_eq!(c.get_ports(), &[5433]);
        let c = parse("postgresql://[2001:db8::1234]");
        assert_eq!(c.get_hosts(), &[tcp("2001:db8::1234")]);
        assert!(c.get_ports().is_empty());
        let c = parse("postgresql://u@[fe80::1%25eth0]/d");
        assert_eq!(c.get_hosts(), &[tcp("fe80::1%eth0")]);
    }

    #[test]
    fn multiple_hosts_and_ports() {
        let c = parse("postgresql://h1:5433,[::1]:5434,h3:5435/db");
        assert_eq!(c.get_hosts(), &[tcp("h1"), tcp("::1"), tcp("h3")]);
        assert_eq!(c.get_ports(), &[5433, 5434, 5435]);
        // Missing ports in a list are the default port.
        let c = parse("postgresql://h1,h2:5433");
        assert_eq!(c.get_hosts(), &[tcp("h1"), tcp("h2")]);
        assert_eq!(c.get_ports(), &[5432, 5433]);
        let c = parse("postgresql://h1,h2");
        assert_eq!(c.get_hosts(), &[tcp("h1"), tcp("h2")]);
        assert!(c.get_ports().is_empty());
        // An empty host in a list is the default host.
        let c = parse("postgresql://,h2");
        assert_eq!(c.get_hosts(), &[tcp("localhost"), tcp("h2")]);
        // One port for every host.
        let c = parse("postgresql://h1,h2/db?port=6000");
        assert_eq!(c.get_ports(), &[6000]);
        let c = parse("postgresql:///db?host=a,b&port=1,2");
        assert_eq!(c.get_hosts(), &[tcp("a"), tcp("b")]);
        assert_eq!(c.get_ports(), &[1, 2]);
    }

    #[test]
    fn port_count_must_match_host_count() {
        assert_error_names(
            "postgresql://a,b/db?port=1,2,3",
            &["3 port numbers", "2 hosts"],
        );
        assert_error_names(
            "host=a,b,c port=1,2",
            &["2 port numbers", "(1,2)", "3 hosts"],
        );
        assert_error_names("port=1,2", &["2 port numbers", "1 hosts"]);
    }

    #[test]
    fn percent_encoding() {
        let c = parse("postgresql://us%40er:pa%2Fss%3Aword@h/d%20b");
        assert_eq!(c.get_user(), Some("us@er"));
        assert_eq!(c.get_password(), Some(&b"pa/ss:word"[..]));
        assert_eq!(c.get_dbname(), Some("d b"));
        let c = parse("postgresql://h/db?application_name=caf%C3%A9&options=a%2bb+c");
        assert_eq!(c.get_application_name(), Some("café"));
        // '+' is not a space in libpq URIs.
        assert_eq!(c.get_options(), Some("a+b+c"));
        // An unencoded '@' in the password: the host follows the last '@'.
        let c = parse("postgresql://u:p@ss@h");
        assert_eq!(c.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(c.get_hosts(), &[tcp("h")]);
        // Passwords are bytes, so they need not be UTF-8.
        let c = parse("postgresql://u:%FF%FE@h");
        assert_eq!(c.get_password(), Some(&[0xff, 0xfe][..]));
        let c = parse("postgresql://h?%75ser=encoded%20key");
        assert_eq!(c.get_user(), Some("encoded key"));
    }

    #[test]
    fn unix_socket_directories() {
        let c = parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db");
        assert_eq!(c.get_hosts(), &[unix("/var/run/postgresql")]);
        assert_eq!(c.get_dbname(), Some("db"));
        let c = parse("postgresql://%2Ftmp:5433,remote/db");
        assert_eq!(c.get_hosts(), &[unix("/tmp"), tcp("remote")]);
        assert_eq!(c.get_ports(), &[5433, 5432]);
        let c = parse("postgresql:///db?host=/run/pgsock");
        assert_eq!(c.get_hosts(), &[unix("/run/pgsock")]);
        let c = parse("postgresql:///db?host=%2Frun%2Fpgsock");
        assert_eq!(c.get_hosts(), &[unix("/run/pgsock")]);
        // A query host replaces the one in the authority, as in libpq.
        let c = parse("postgresql://ignored/db?host=/run/pgsock");
        assert_eq!(c.get_hosts(), &[unix("/run/pgsock")]);
        let c = Config::new().host("/run/pg").host("db");
        assert_eq!(c.get_hosts(), &[unix("/run/pg"), tcp("db")]);
    }

    #[test]
    fn every_sslmode() {
        let modes = [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ];
        for (text, mode) in modes {
            assert_eq!(
                parse(&format!("postgresql://h?sslmode={text}")).get_ssl_mode(),
                mode
            );
            assert_eq!(parse(&format!("sslmode={text}")).get_ssl_mode(), mode);
        }
        assert_eq!(
            parse("postgresql://h?ssl=true").get_ssl_mode(),
            SslMode::Require
        );
        assert_eq!(parse("postgresql://h").get_ssl_mode(), SslMode::default());
        assert_error_names("postgresql://h?sslmode=bogus", &["sslmode", "\"bogus\""]);
        assert_error_names("sslmode=Require", &["sslmode", "\"Require\""]);
        assert_error_names("postgresql://h?ssl=false", &["\"ssl\""]);
    }

    #[test]
    fn connect_timeout_follows_libpq() {
        let timeout = |v: &str| parse(&format!("connect_timeout={v}")).get_connect_timeout();
        assert_eq!(timeout("10"), Some(Duration::from_secs(10)));
        assert_eq!(timeout("1"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("2"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("0"), None);
        assert_eq!(timeout("-5"), None);
        assert_eq!(timeout("' 7 '"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse("postgresql://h?connect_timeout=3").get_connect_timeout(),
            Some(Duration::from_secs(3))
        );
        assert_error_names("connect_timeout=abc", &["connect_timeout", "\"abc\""]);
        assert_error_names("connect_timeout=1.5", &["connect_timeout", "\"1.5\""]);
    }

    #[test]
    fn crate_specific_options() {
        for (text, value) in [
            ("true", true),
            ("1", true),
            ("yes", true),
            ("ON", true),
            ("false", false),
            ("0", false),
            ("no", false),
            ("off", false),
        ] {
            let c = parse(&format!("allow_insecure_auth={text}"));
            assert_eq!(c.get_allow_insecure_auth(), value, "{text}");
        }
        assert_error_names(
            "allow_insecure_auth=maybe",
            &["allow_insecure_auth", "\"maybe\""],
        );
        assert_eq!(
            parse("statement_cache_size=7").get_statement_cache_size(),
            7
        );
        assert_error_names(
            "statement_cache_size=-1",
            &["statement_cache_size", "\"-1\""],
        );
        assert_eq!(parse("max_message_size=4096").get_max_message_size(), 4096);
        assert_error_names("max_message_size=0", &["max_message_size", "\"0\""]);
        assert_error_names("max_message_size=big", &["max_message_size", "\"big\""]);
    }

    #[test]
    fn ignored_and_fallback_options() {
        let c = parse(
            "postgresql://h/db?target_session_attrs=read-write\
             &keepalives=1&keepalives_idle=5&keepalives_interval=5&keepalives_count=3\
             &gssencmode=disable&sslcompression=0&fallback_application_name=fb",
        );
        assert_eq!(c.get_application_name(), Some("fb"));
        let c = parse("application_name=main fallback_application_name=fb");
        assert_eq!(c.get_application_name(), Some("main"));
        let c = parse("fallback_application_name=fb application_name=main");
        assert_eq!(c.get_application_name(), Some("main"));
        // libpq sends an empty application_name as if unset, so the fallback applies.
        let c = parse("application_name='' fallback_application_name=fb");
        assert_eq!(c.get_application_name(), Some("fb"));
    }

    #[test]
    fn tls_options() {
        let c = parse(
            "postgresql://h/db?sslrootcert=%2Fca.pem&sslcert=c.pem&sslkey=k.pem\
             &sslnegotiation=direct&channel_binding=require&require_auth=scram-sha-256\
             &accept_invalid_certs=true&query_timeout=2.5",
        );
        assert_eq!(
            c.get_ssl_root_certs(),
            &RootCerts::Custom(PemSource::File(PathBuf::from("/ca.pem")))
        );
        assert_eq!(
            c.client_cert,
            Some((
                PemSource::File("c.pem".into()),
                PemSource::File("k.pem".into())
            ))
        );
        assert_eq!(c.get_ssl_negotiation(), SslNegotiation::Direct);
        assert_eq!(c.get_channel_binding(), ChannelBinding::Require);
        assert!(c.require_auth.is_some());
        assert!(c.get_accept_invalid_certs());
        assert_eq!(c.get_query_timeout(), Some(Duration::from_millis(2500)));
        assert_eq!(
            parse("sslrootcert=system").get_ssl_root_certs(),
            &RootCerts::System
        );
        assert_error_names("sslcert=c.pem", &["sslcert and sslkey"]);
        assert_error_names("sslnegotiation=fast", &["sslnegotiation", "\"fast\""]);
        assert_error_names("channel_binding=maybe", &["channel_binding", "\"maybe\""]);
        assert_error_names("require_auth=gss", &["\"gss\""]);
        assert_error_names("query_timeout=soon", &["query_timeout", "\"soon\""]);
    }

    #[test]
    fn hostaddr_is_connected_to() {
        let c = parse("host=db.example hostaddr=10.0.0.5");
        assert_eq!(c.get_hosts(), &[tcp("10.0.0.5")]);
        let c = parse("hostaddr=10.0.0.5 host=db.example");
        assert_eq!(c.get_hosts(), &[tcp("10.0.0.5")]);
        let c = parse("postgresql://name/db?hostaddr=10.0.0.5,10.0.0.6");
        assert_eq!(c.get_hosts(), &[tcp("10.0.0.5"), tcp("10.0.0.6")]);
    }

    #[test]
    fn malformed_uris_name_the_bad_part() {
        assert_error_names("garbage", &["\"garbage\"", "missing \"=\""]);
        assert_error_names(
            "postgresql://h:99999/db",
            &["port", "\"99999\"", "position 16"],
        );
        assert_error_names("postgresql://h:abc/db", &["port", "\"abc\"", "position 16"]);
        assert_error_names("postgresql://h:0", &["port", "\"0\""]);
        assert_error_names("postgresql://h1:5432,h2:-1", &["port", "\"-1\""]);
        assert_error_names("postgresql://h/db?port=70000", &["port", "\"70000\""]);
        assert_error_names(
            "postgresql://%zz@h",
            &["\"%zz\"", "user name", "position 14"],
        );
        assert_error_names("postgresql://h%zz/d", &["\"%zz\"", "host"]);
        assert_error_names("postgresql://h/d%zz", &["\"%zz\"", "database name"]);
        assert_error_names("postgresql://h/d%4", &["\"%4\"", "database name"]);
        assert_error_names(
            "postgresql://h/d?user=%g1",
            &["\"%g1\"", "query parameter value"],
        );
        assert_error_names("postgresql://h/d%00", &["%00", "database name"]);
        assert_error_names("postgresql://%FF@h", &["user name", "UTF-8"]);
        assert_error_names(
            "postgresql://[::1/db",
            &["IPv6", "\"[::1\"", "\"]\"", "position 14"],
        );
        assert_error_names("postgresql://[::1", &["IPv6", "\"[::1\""]);
        assert_error_names("postgresql://[]:5432", &["IPv6", "\"[]\""]);
        assert_error_names("postgresql://[::1]x/db", &["\"x\"", "IPv6", "position 19"]);
        assert_error_names("postgresql://h/db?foo=bar", &["\"foo\"", "query parameter"]);
        assert_error_names(
            "postgresql://h/db?sslmode",
            &["\"sslmode\"", "missing \"=\""],
        );
        assert_error_names(
            "postgresql://h/db?options=a=b",
            &["\"options\"", "extra \"=\""],
        );
        assert_error_names("mysql://h/db", &["\"mysql://\"", "scheme"]);
        assert_error_names("postgresql://h/db?user=ok&bogus_key=1", &["\"bogus_key\""]);
    }

    #[test]
    fn password_is_never_echoed_in_errors() {
        let message = error("postgresql://u:hunter%zz2@h");
        assert!(message.contains("password"), "{message}");
        assert!(!message.contains("hunter"), "{message}");
        assert!(!message.contains("%zz"), "{message}");
    }

    #[test]
    fn conninfo_quoting_and_escapes() {
        let c = parse(r"host = db   user=app password='it\'s a \\ secret' dbname='my db'");
        assert_eq!(c.get_hosts(), &[tcp("db")]);
        assert_eq!(c.get_user(), Some("app"));
        assert_eq!(c.get_password(), Some(&b"it's a \\ secret"[..]));
        assert_eq!(c.get_dbname(), Some("my db"));
        let c = parse(r"user=a\ b\\c dbname=x\'y");
        assert_eq!(c.get_user(), Some("a b\\c"));
        assert_eq!(c.get_dbname(), Some("x'y"));
        let c = parse("\tuser=\n'app'\r\n dbname=d ");
        assert_eq!(c.get_user(), Some("app"));
        assert_eq!(c.get_dbname(), Some("d"));
        let c = parse("options='-c geqo=off' password=");
        assert_eq!(c.get_options(), Some("-c geqo=off"));
        assert_eq!(c.get_password(), None);
        // Later keys win, as in libpq.
        assert_eq!(parse("user=a user=b").get_user(), Some("b"));
        let c = parse("host=/run/postgresql,db2,[::1] port=5432,,5434");
        assert_eq!(
            c.get_hosts(),
            &[unix("/run/postgresql"), tcp("db2"), tcp("[::1]")]
        );
        assert_eq!(c.get_ports(), &[5432, 5432, 5434]);
    }

    #[test]
    fn empty_conninfo_is_default() {
        for s in ["", "   ", "\n\t"] {
            let c = parse(s);
            assert!(c.get_hosts().is_empty());
            assert!(c.get_ports().is_empty());
            assert_eq!(c.get_user(), None);
            assert_eq!(c.get_ssl_mode(), SslMode::default());
        }
    }

    #[test]
    fn malformed_conninfo_names_the_bad_part() {
        assert_error_names("host=h user", &["\"user\"", "missing \"=\"", "position 8"]);
        assert_error_names("user='app", &["\"user\"", "unterminated", "position 6"]);
        assert_error_names(r"user='app\'", &["\"user\"", "unterminated"]);
        assert_error_names("bogus=1", &["\"bogus\"", "connection option"]);
        assert_error_names("=x", &["position 1", "\"=\""]);
        assert_error_names("port=abc", &["port", "\"abc\""]);
        assert_error_names("port=5432,99999", &["port", "\"99999\""]);
    }

    #[test]
    fn from_uri_falls_back_to_conninfo_and_from_str() {
        let c = parse("host=localhost user=app");
        assert_eq!(c.get_hosts(), &[tcp("localhost")]);
        assert_eq!(c.get_user(), Some("app"));
        let c: Config = match "postgres://app@h/db".parse() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.get_dbname(), Some("db"));
        assert!("postgres://h:x".parse::<Config>().is_err());
        // "://" inside a conninfo value is not a scheme.
        let c = parse("options='-c x://y' user=u");
        assert_eq!(c.get_options(), Some("-c x://y"));
    }

    #[test]
    fn env_lookup_builds_a_config() {
        let vars = env(&[
            ("PGHOST", "/run/pg,db2"),
            ("PGPORT", "5433,5434"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "1"),
            ("PGSSLMODE", "require"),
            ("PGOPTIONS", "-c x=y"),
        ]);
        let c = match Config::new().with_env_lookup(vars) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.get_hosts(), &[unix("/run/pg"), tcp("db2")]);
        assert_eq!(c.get_ports(), &[5433, 5434]);
        assert_eq!(c.get_user(), Some("envuser"));
        assert_eq!(c.get_password(), Some(&b"envpw"[..]));
        assert_eq!(c.get_dbname(), Some("envdb"));
        assert_eq!(c.get_application_name(), Some("envapp"));
        assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.get_options(), Some("-c x=y"));

        let c = match Config::new()
            .with_env_lookup(env(&[("PGHOST", "a"), ("PGHOSTADDR", "10.1.1.1")]))
        {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.get_hosts(), &[tcp("10.1.1.1")]);
    }

    #[test]
    fn env_fills_only_unset_fields() {
        let vars = env(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "1111"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "30"),
            ("PGSSLMODE", "disable"),
        ]);
        let c = match parse(
            "postgresql://uriuser@urihost:2222/uridb?sslmode=verify-full&connect_timeout=0\
             &fallback_application_name=fb",
        )
        .with_env_lookup(&vars)
        {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.get_hosts(), &[tcp("urihost")]);
        assert_eq!(c.get_ports(), &[2222]);
        assert_eq!(c.get_user(), Some("uriuser"));
        assert_eq!(c.get_password(), Some(&b"envpw"[..]));
        assert_eq!(c.get_dbname(), Some("uridb"));
        // PGAPPNAME outranks fallback_application_name in libpq.
        assert_eq!(c.get_application_name(), Some("envapp"));
        // Explicitly "no timeout" and an explicit default sslmode both stay.
        assert_eq!(c.get_connect_timeout(), None);
        assert_eq!(c.get_ssl_mode(), SslMode::VerifyFull);

        let c = match Config::new()
            .ssl_mode(SslMode::Prefer)
            .application_name("mine")
            .with_env_lookup(&vars)
        {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(c.get_application_name(), Some("mine"));
        assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(30)));

        // Empty variables count as unset.
        let c = match Config::new().with_env_lookup(env(&[("PGUSER", ""), ("PGPORT", "")])) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.get_user(), None);
        assert!(c.get_ports().is_empty());
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let check =
            |vars: &'static [(&'static str, &'static str)], parts: &[&str]| match Config::new()
                .with_env_lookup(env(vars))
            {
                Ok(c) => panic!("{vars:?} should fail, got {c:?}"),
                Err(e) => {
                    let message = e.to_string();
                    for part in parts {
                        assert!(message.contains(part), "{message} should mention {part}");
                    }
                }
            };
        check(&[("PGPORT", "abc")], &["PGPORT", "\"abc\""]);
        check(&[("PGSSLMODE", "nope")], &["PGSSLMODE", "\"nope\""]);
        check(
            &[("PGCONNECT_TIMEOUT", "soon")],
            &["PGCONNECT_TIMEOUT", "\"soon\""],
        );
        check(
            &[("PGHOST", "a,b"), ("PGPORT", "1,2,3")],
            &["3 port numbers", "2 hosts"],
        );
    }

    #[test]
    fn from_env_reads_the_process_environment() {
        // Only checks that it runs; the values depend on how the tests were
        // launched, and tests must not change the process environment.
        let _ = Config::from_env();
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = parse("postgresql://u:topsecret@h/d").password("hunter2");
        let debug = format!("{c:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("104, 117"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("\"u\""), "{debug}");
        assert!(!format!("{:#?}", c).contains("hunter2"));
    }

    #[test]
    fn builder_setters_and_getters() {
        let c = Config::new()
            .host("h")
            .port(1)
            .user("u")
            .password([0u8, 1])
            .dbname("d")
            .application_name("a")
            .options("o")
            .connect_timeout(Duration::from_secs(3))
            .ssl_mode(SslMode::Allow)
            .allow_insecure_auth(true)
            .max_message_size(9)
            .statement_cache_size(8)
            .passfile("/p");
        assert_eq!(c.get_hosts(), &[tcp("h")]);
        assert_eq!(c.get_ports(), &[1]);
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_password(), Some(&[0u8, 1][..]));
        assert_eq!(c.get_dbname(), Some("d"));
        assert_eq!(c.get_application_name(), Some("a"));
        assert_eq!(c.get_options(), Some("o"));
        assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(c.get_ssl_mode(), SslMode::Allow);
        assert!(c.get_allow_insecure_auth());
        assert_eq!(c.get_max_message_size(), 9);
        assert_eq!(c.get_statement_cache_size(), 8);
        assert_eq!(c.get_passfile(), Some(std::path::Path::new("/p")));
    }

    const PGPASS: &[u8] = b"# comment\n\
        db.example:5432:shop:app:tcp-pw\n\
        localhost:5433:*:app:local-pw\n\
        /run/pg:5432:*:app:socket-pw\n\
        *:*:*:app:wild-pw\n";

    #[test]
    fn pgpass_lookup_keys() {
        let pw = |c: Config| c.with_pgpass_contents(PGPASS).password;
        assert_eq!(
            pw(parse("postgresql://app@db.example/shop")),
            Some(b"tcp-pw".to_vec())
        );
        // dbname defaults to the user name: "app" is not "shop".
        assert_eq!(
            pw(parse("postgresql://app@db.example")),
            Some(b"wild-pw".to_vec())
        );
        // No host matches localhost.
        assert_eq!(
            pw(parse("postgresql://app@:5433/x")),
            Some(b"local-pw".to_vec())
        );
        // A socket directory matches its path first, else localhost.
        assert_eq!(
            pw(parse("host=/run/pg user=app")),
            Some(b"socket-pw".to_vec())
        );
        assert_eq!(
            pw(parse("host=/tmp port=5433 user=app")),
            Some(b"local-pw".to_vec())
        );
        // The first host and port are the key.
        assert_eq!(
            pw(parse("postgresql://app@db.example:5432,other:5433/shop")),
            Some(b"tcp-pw".to_vec())
        );
        // No user: nothing to match.
        assert_eq!(pw(parse("postgresql://db.example/shop")), None);
        // No line matches a different user.
        assert_eq!(pw(parse("postgresql://bob@db.example/shop")), None);
    }

    #[test]
    fn pgpass_does_not_override_a_password() {
        let c =
            parse("postgresql://app:given@db.example/shop").with_pgpass_contents(b"*:*:*:*:file\n");
        assert_eq!(c.get_password(), Some(&b"given"[..]));
        let c = parse("postgresql://app:given@db.example/shop").with_pgpass();
        assert_eq!(c.get_password(), Some(&b"given"[..]));
        // An empty password counts as unset, as in libpq.
        let c = Config::new()
            .user("app")
            .password("")
            .with_pgpass_contents(b"*:*:*:*:file\n");
        assert_eq!(c.get_password(), Some(&b"file"[..]));
    }

    #[test]
    fn missing_pgpass_file_is_fine() {
        let c = Config::new()
            .user("app")
            .passfile("/nonexistent/wasi-pg-client/pgpass")
            .with_pgpass();
        assert_eq!(c.get_password(), None);
    }

    #[cfg(unix)]
    #[test]
    fn pgpass_file_end_to_end() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!(
            "wasi-pg-client-config-pgpass-{}",
            std::process::id()
        ));
        assert!(std::fs::write(&path, PGPASS).is_ok());
        assert!(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).is_ok());
        let c = parse("postgresql://app@db.example/shop")
            .passfile(&path)
            .with_pgpass();
        assert_eq!(c.get_password(), Some(&b"tcp-pw"[..]));
        assert!(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).is_ok());
        let c = parse("postgresql://app@db.example/shop")
            .passfile(&path)
            .with_pgpass();
        assert_eq!(c.get_password(), None);
        let _ = std::fs::remove_file(&path);
    }
}
