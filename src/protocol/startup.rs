//! Startup and authentication as a state machine: fed backend messages, it
//! appends the frontend answers to a buffer, until ReadyForQuery.
//!
//! Pure: the caller moves the bytes. Cleartext and MD5 passwords are refused
//! over an unencrypted connection unless the user opted in, because both
//! hand a passive observer the password or a replayable hash.

use std::collections::HashMap;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::api::error::DbError;
use crate::api::tls_config::{AuthMethod, ChannelBinding, RequireAuth};
use crate::PgError;

/// What the user configured that startup needs.
#[derive(Debug, Clone)]
pub(crate) struct StartupParams {
    pub(crate) user: String,
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) dbname: Option<String>,
    pub(crate) application_name: Option<String>,
    pub(crate) options: Option<String>,
    pub(crate) allow_insecure_auth: bool,
    /// Whether the byte stream is encrypted (TLS).
    pub(crate) encrypted: bool,
    /// tls-server-end-point data when TLS is on and it can be computed.
    #[cfg_attr(not(feature = "scram"), allow(dead_code))]
    pub(crate) channel_binding: Option<Vec<u8>>,
    pub(crate) channel_binding_mode: ChannelBinding,
    pub(crate) require_auth: Option<RequireAuth>,
}

/// What the server told us during startup.
#[derive(Debug, Default)]
pub(crate) struct SessionInfo {
    pub(crate) parameters: HashMap<String, String>,
    pub(crate) backend_key: Option<(i32, i32)>,
    pub(crate) notices: Vec<DbError>,
}

enum State {
    /// Waiting for the server's authentication request.
    Authenticating,
    #[cfg(feature = "scram")]
    Scram(Box<postgres_protocol::authentication::sasl::ScramSha256>),
    /// The server proved it knows the password; only AuthenticationOk may
    /// follow (never a second, weaker method).
    #[cfg(feature = "scram")]
    ScramVerified,
    /// Authenticated; collecting parameters until ReadyForQuery.
    Authenticated,
}

/// Whether startup is finished.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    Continue,
    Ready,
}

pub(crate) struct Startup {
    params: StartupParams,
    state: State,
    /// The server asked for some authentication (so AuthenticationOk is not
    /// "none").
    asked: bool,
    /// SCRAM-SHA-256-PLUS was used.
    bound: bool,
    pub(crate) info: SessionInfo,
}

const OPT_IN: &str = "use TLS (sslmode=require or stronger), a SCRAM user, or opt in with \
                      Config::allow_insecure_auth(true) (allow_insecure_auth=true in the URI)";

impl Startup {
    /// Starts the exchange; the StartupMessage is appended to `out`.
    pub(crate) fn begin(params: StartupParams, out: &mut BytesMut) -> Result<Startup, PgError> {
        let mut pairs: Vec<(&str, &str)> =
            vec![("user", params.user.as_str()), ("client_encoding", "UTF8")];
        if let Some(db) = &params.dbname {
            pairs.push(("database", db));
        }
        if let Some(app) = &params.application_name {
            pairs.push(("application_name", app));
        }
        if let Some(options) = &params.options {
            pairs.push(("options", options));
        }
        frontend::startup_message(pairs.iter().copied(), out)
            .map_err(|e| PgError::Config(format!("startup parameters cannot be sent: {e}")))?;
        if params.channel_binding_mode == ChannelBinding::Require && !params.encrypted {
            return Err(PgError::Auth(
                "channel_binding=require, but the connection is not encrypted: use sslmode=require \
                 or stronger"
                    .into(),
            ));
        }
        Ok(Startup {
            params,
            state: State::Authenticating,
            asked: false,
            bound: false,
            info: SessionInfo::default(),
        })
    }

    fn password(&self) -> Result<&[u8], PgError> {
        self.params.password.as_deref().ok_or_else(|| {
            PgError::Auth(format!(
                "the server asked user {:?} for a password, but none is configured",
                self.params.user
            ))
        })
    }

    /// libpq's `require_auth` and `channel_binding=require` checks, made
    /// before answering (or accepting) an authentication request.
    fn check_method(&mut self, method: AuthMethod, name: &str) -> Result<(), PgError> {
        if let Some(required) = &self.params.require_auth {
            if !required.allows(method) {
                return Err(PgError::Auth(format!(
                    "the server asked for {name} authentication, which require_auth does not allow"
                )));
            }
        }
        if self.params.channel_binding_mode == ChannelBinding::Require
            && method != AuthMethod::ScramSha256
        {
            return Err(PgError::Auth(format!(
                "channel_binding=require, but the server asked for {name} authentication, \
                 which has no channel binding"
            )));
        }
        self.asked |= method != AuthMethod::None;
        Ok(())
    }

    fn refuse_insecure(&self, method: &str) -> Result<(), PgError> {
        if self.params.encrypted || self.params.allow_insecure_auth {
            return Ok(());
        }
        Err(PgError::Auth(format!(
            "the server asked for {method} authentication over an unencrypted connection; \
             refused because it exposes the password. To proceed, {OPT_IN}"
        )))
    }

    /// Handles one backend message, appending any answer to `out`.
    pub(crate) fn on_message(
        &mut self,
        message: Message,
        out: &mut BytesMut,
    ) -> Result<Progress, PgError> {
        let send_err = |e: std::io::Error| PgError::Auth(format!("cannot send credentials: {e}"));
        match message {
            Message::ErrorResponse(body) => {
                let db = DbError::parse(&mut body.fields())?;
                return Err(PgError::Server(Box::new(db)));
            }
            Message::NoticeResponse(body) => {
                let db = DbError::parse(&mut body.fields())?;
                self.info.notices.push(db);
            }
            Message::ParameterStatus(body) => {
                let name = body.name().map_err(bad_message)?.to_string();
                let value = body.value().map_err(bad_message)?.to_string();
                self.info.parameters.insert(name, value);
            }
            Message::BackendKeyData(body) => {
                self.info.backend_key = Some((body.process_id(), body.secret_key()));
            }
            Message::ReadyForQuery(_) => {
                if !matches!(self.state, State::Authenticated) {
                    return Err(PgError::Protocol(
                        "ReadyForQuery before authentication finished".into(),
                    ));
                }
                return Ok(Progress::Ready);
            }
            Message::AuthenticationOk => {
                #[cfg(feature = "scram")]
                if matches!(self.state, State::Scram(_)) {
                    return Err(PgError::Auth(
                        "the server ended SCRAM without its final message".into(),
                    ));
                }
                if !self.asked {
                    // trust, or a client certificate alone
                    self.check_method(AuthMethod::None, "no")?;
                }
                if self.params.channel_binding_mode == ChannelBinding::Require && !self.bound {
                    return Err(PgError::Auth(
                        "channel_binding=require, but the server authenticated without \
                         channel binding"
                            .into(),
                    ));
                }
                self.state = State::Authenticated;
            }
            Message::AuthenticationCleartextPassword => {
                self.expect_authenticating("a cleartext password")?;
                self.check_method(AuthMethod::Password, "cleartext password")?;
                self.refuse_insecure("cleartext password")?;
                frontend::password_message(self.password()?, out).map_err(send_err)?;
            }
            Message::AuthenticationMd5Password(body) => {
                self.expect_authenticating("an MD5 password")?;
                self.check_method(AuthMethod::Md5, "MD5 password")?;
                self.md5(body.salt(), out)?;
            }
            Message::AuthenticationSasl(body) => {
                self.expect_authenticating("SASL")?;
                self.check_method(AuthMethod::ScramSha256, "SCRAM-SHA-256")?;
                let mut mechanisms = Vec::new();
                let mut iter = body.mechanisms();
                while let Some(m) = iter.next().map_err(bad_message)? {
                    mechanisms.push(m.to_string());
                }
                self.sasl_start(&mechanisms, out)?;
            }
            Message::AuthenticationSaslContinue(body) => {
                self.sasl_continue(body.data(), out)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                self.sasl_final(body.data())?;
            }
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationSspi => {
                return Err(PgError::Auth(
                    "the server asked for Kerberos/GSSAPI/SSPI/SCM authentication, \
                     which this client does not support"
                        .into(),
                ));
            }
            _ => {
                return Err(PgError::Protocol(
                    "unexpected message from the server during startup".into(),
                ));
            }
        }
        Ok(Progress::Continue)
    }

    fn expect_authenticating(&self, what: &str) -> Result<(), PgError> {
        if matches!(self.state, State::Authenticating) {
            Ok(())
        } else {
            Err(PgError::Protocol(format!(
                "the server asked for {what} in the middle of authentication"
            )))
        }
    }

    #[cfg(feature = "md5-auth")]
    fn md5(&mut self, salt: [u8; 4], out: &mut BytesMut) -> Result<(), PgError> {
        self.refuse_insecure("MD5 password")?;
        let hash = postgres_protocol::authentication::md5_hash(
            self.params.user.as_bytes(),
            self.password()?,
            salt,
        );
        frontend::password_message(hash.as_bytes(), out)
            .map_err(|e| PgError::Auth(format!("cannot send credentials: {e}")))
    }

    #[cfg(not(feature = "md5-auth"))]
    fn md5(&mut self, _salt: [u8; 4], _out: &mut BytesMut) -> Result<(), PgError> {
        Err(PgError::Auth(
            "the server asked for MD5 authentication; MD5 is legacy and off by default: \
             enable the `md5-auth` feature of wasi-pg-client (and see allow_insecure_auth), \
             or switch the user to SCRAM-SHA-256"
                .into(),
        ))
    }

    #[cfg(feature = "scram")]
    fn sasl_start(&mut self, mechanisms: &[String], out: &mut BytesMut) -> Result<(), PgError> {
        use postgres_protocol::authentication::sasl::{
            ChannelBinding as Gs2, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
        };
        let offers = |m: &str| mechanisms.iter().any(|o| o == m);
        let binding = match self.params.channel_binding_mode {
            ChannelBinding::Disable => None,
            _ => self.params.channel_binding.clone(),
        };
        let (mechanism, gs2) = match binding {
            Some(data) if offers(SCRAM_SHA_256_PLUS) => {
                self.bound = true;
                (SCRAM_SHA_256_PLUS, Gs2::tls_server_end_point(data))
            }
            _ if self.params.channel_binding_mode == ChannelBinding::Require => {
                return Err(PgError::Auth(format!(
                    "channel_binding=require, but the server offered only {mechanisms:?} \
                     (no SCRAM-SHA-256-PLUS){}",
                    if self.params.channel_binding.is_none() {
                        "; this server certificate's signature algorithm has no binding hash"
                    } else {
                        ""
                    }
                )));
            }
            // We could bind but the server does not offer it: GS2 flag `y`
            // (RFC 5802), so a downgrade by a man in the middle is caught.
            Some(_) if offers(SCRAM_SHA_256) => (SCRAM_SHA_256, Gs2::unrequested()),
            _ if offers(SCRAM_SHA_256) => (SCRAM_SHA_256, Gs2::unsupported()),
            _ => {
                return Err(PgError::Auth(format!(
                    "the server offered SASL mechanisms {mechanisms:?}, none of which this \
                     client supports"
                )))
            }
        };
        let scram = ScramSha256::new(self.password()?, gs2);
        frontend::sasl_initial_response(mechanism, scram.message(), out)
            .map_err(|e| PgError::Auth(format!("cannot send credentials: {e}")))?;
        self.state = State::Scram(Box::new(scram));
        Ok(())
    }

    #[cfg(not(feature = "scram"))]
    fn sasl_start(&mut self, _mechanisms: &[String], _out: &mut BytesMut) -> Result<(), PgError> {
        Err(PgError::Auth(
            "the server asked for SCRAM-SHA-256; enable the `scram` feature of wasi-pg-client"
                .into(),
        ))
    }

    #[cfg(feature = "scram")]
    fn sasl_continue(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), PgError> {
        let State::Scram(scram) = &mut self.state else {
            return Err(PgError::Protocol("SASL continue without SASL start".into()));
        };
        scram
            .update(data)
            .map_err(|e| PgError::Auth(format!("SCRAM exchange failed: {e}")))?;
        frontend::sasl_response(scram.message(), out)
            .map_err(|e| PgError::Auth(format!("cannot send credentials: {e}")))
    }

    #[cfg(not(feature = "scram"))]
    fn sasl_continue(&mut self, _data: &[u8], _out: &mut BytesMut) -> Result<(), PgError> {
        Err(PgError::Protocol("SASL continue without SASL start".into()))
    }

    #[cfg(feature = "scram")]
    fn sasl_final(&mut self, data: &[u8]) -> Result<(), PgError> {
        let State::Scram(scram) = &mut self.state else {
            return Err(PgError::Protocol("SASL final without SASL start".into()));
        };
        scram.finish(data).map_err(|e| {
            PgError::Auth(format!("the server's SCRAM signature did not verify: {e}"))
        })?;
        self.state = State::ScramVerified;
        Ok(())
    }

    #[cfg(not(feature = "scram"))]
    fn sasl_final(&mut self, _data: &[u8]) -> Result<(), PgError> {
        Err(PgError::Protocol("SASL final without SASL start".into()))
    }
}

fn bad_message(e: std::io::Error) -> PgError {
    PgError::Protocol(format!("malformed startup message from the server: {e}"))
}
