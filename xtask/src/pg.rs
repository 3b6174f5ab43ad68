//! A small blocking PostgreSQL client: authenticates and runs simple queries, so that
//! xtask can probe readiness and administer databases without linking an async runtime.

use std::{
    fmt,
    io::{self, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::{
    authentication::{md5_hash, sasl},
    message::{
        backend::{AuthenticationSaslBody, Message},
        frontend,
    },
};
use url::Url;

use crate::{
    config::percent_decode,
    tls::{self, Attempt, TlsFailure, TlsSettings, Upgrade},
};

/// Why a connection or a query failed, classified so that callers can tell
/// "not running yet" from "wrong password" from "no such database".
#[derive(Debug)]
pub enum PgError {
    /// The host name did not resolve.
    Resolve(String),
    /// Nothing answered, or the connection broke.
    Io(io::Error),
    /// The server answered with an error.
    Server { code: String, message: String },
    /// The server said something this client does not understand.
    Protocol(String),
    /// TLS could not be set up as `sslmode` asks: a certificate, a setting, or the server.
    Tls(TlsFailure),
    /// The server's pg_hba.conf has no line for this connection, with or without TLS (`tls`).
    Refused { tls: bool, message: String },
}

impl PgError {
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_auth_failure(&self) -> bool {
        matches!(self.code(), Some("28P01" | "28000"))
    }

    pub fn is_missing_database(&self) -> bool {
        self.code() == Some("3D000")
    }

    /// What to do about a failure that waiting will not cure; `None` when waiting may, or when
    /// the remedy depends on who runs the server (wrong credentials).
    pub fn remedy(&self) -> Option<String> {
        match self {
            PgError::Resolve(_) => Some("check the host in DATABASE_URL".into()),
            PgError::Tls(failure) => Some(failure.remedy.clone()),
            PgError::Refused { tls: false, .. } => Some(
                "if the server accepts only TLS, set sslmode=require (or verify-full with sslrootcert) in DATABASE_URL; otherwise have its pg_hba.conf admit this user and database".into(),
            ),
            PgError::Refused { tls: true, .. } => Some(
                "have the server's pg_hba.conf admit this user and database over TLS, or check them in DATABASE_URL".into(),
            ),
            _ => None,
        }
    }

    /// A pg_hba.conf refusal, told apart from wrong credentials (both are SQLSTATE 28000) by
    /// the file the server names, which stays untranslated in every locale.
    fn refused(self, tls: bool) -> PgError {
        match self {
            PgError::Server { code, message }
                if code == "28000" && message.contains("pg_hba.conf") =>
            {
                PgError::Refused { tls, message }
            }
            other => other,
        }
    }

    /// The server is there but cannot take connections yet (starting, stopping, recovering).
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Io(_) => true,
            PgError::Server { code, .. } => matches!(code.as_str(), "57P03" | "57P01" | "53300"),
            _ => false,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Resolve(host) => write!(f, "host {host:?} does not resolve"),
            PgError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                f.write_str("connection refused")
            }
            PgError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                f.write_str("timed out")
            }
            PgError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("server closed the connection")
            }
            PgError::Io(e) => write!(f, "{e}"),
            PgError::Server { code, message } => write!(f, "{message} (SQLSTATE {code})"),
            PgError::Protocol(what) => write!(f, "protocol error: {what}"),
            PgError::Tls(failure) => write!(f, "{failure}"),
            PgError::Refused { message, .. } => write!(f, "{message} (SQLSTATE 28000)"),
        }
    }
}

impl std::error::Error for PgError {}

impl From<io::Error> for PgError {
    fn from(e: io::Error) -> Self {
        // rustls reports its errors through io::Error; they are not cured by waiting.
        match TlsFailure::from_io(&e) {
            Some(failure) => PgError::Tls(failure),
            None => PgError::Io(e),
        }
    }
}

/// The connection: TCP for servers at an address, TLS over it when `sslmode` asks, a Unix
/// socket for the local cluster's administration.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tls::TlsStream>),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// Who connects to which database, decoded from a URL or given directly.
struct Login<'a> {
    user: &'a str,
    password: &'a str,
    database: &'a str,
}

pub struct Client {
    stream: Stream,
    buf: BytesMut,
    server_version: String,
}

pub type Row = Vec<Option<String>>;

impl Client {
    /// Connects and authenticates with the URL's credentials (password, MD5 or SCRAM-SHA-256),
    /// with TLS as the URL's `sslmode` and the other libpq TLS parameters ask.
    pub fn connect(url: &Url, timeout: Duration) -> Result<Client, PgError> {
        let settings =
            TlsSettings::from_url(url).map_err(|e| PgError::Tls(TlsFailure::settings(e)))?;
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode).unwrap_or_default();
        let database = percent_decode(url.path().trim_start_matches('/'));
        let login = Login {
            user: &user,
            password: &password,
            database: if database.is_empty() {
                &user
            } else {
                &database
            },
        };
        let attempts = settings.mode.attempts();
        let mut outcome = Err(PgError::Protocol("no connection attempted".into()));
        for (i, attempt) in attempts.iter().enumerate() {
            outcome =
                Client::attempt(url, timeout, &settings, *attempt).and_then(|(stream, tls)| {
                    Client::start(stream, &login).map_err(|e| e.refused(tls))
                });
            // libpq's fallbacks for allow and prefer.
            let retry = match (&outcome, attempts.get(i + 1)) {
                // A pg_hba.conf that refuses one kind of connection may admit the other; a
                // retry of the kind just refused would not (prefer to a server without TLS).
                (Err(PgError::Refused { tls, .. }), Some(next)) => {
                    *tls != (*next != Attempt::Plain)
                }
                // prefer: a TLS handshake that fails leaves an unencrypted connection to try.
                (Err(PgError::Tls(_)), Some(Attempt::Plain)) => true,
                _ => false,
            };
            if !retry {
                break;
            }
        }
        outcome
    }

    /// Opens a TCP connection to the first address that answers, then asks for TLS if
    /// `attempt` says so. Returns the stream and whether it is encrypted.
    fn attempt(
        url: &Url,
        timeout: Duration,
        settings: &TlsSettings,
        attempt: Attempt,
    ) -> Result<(Stream, bool), PgError> {
        let host = url.host_str().unwrap_or("localhost");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port().unwrap_or(5432);
        let addrs: Vec<_> = (host, port)
            .to_socket_addrs()
            .map_err(|_| PgError::Resolve(host.to_owned()))?
            .collect();
        let mut last = PgError::Resolve(host.to_owned());
        for addr in addrs {
            let tcp = match TcpStream::connect_timeout(&addr, timeout) {
                Ok(tcp) => tcp,
                Err(e) => {
                    last = PgError::Io(e);
                    continue;
                }
            };
            tcp.set_read_timeout(Some(timeout))?;
            tcp.set_write_timeout(Some(timeout))?;
            tcp.set_nodelay(true)?;
            let Attempt::Tls { required } = attempt else {
                return Ok((Stream::Tcp(tcp), false));
            };
            return match tls::start_tls(tcp, settings, host)? {
                Upgrade::Tls(stream) => Ok((Stream::Tls(stream), true)),
                Upgrade::Declined(tcp) if !required => Ok((Stream::Tcp(tcp), false)),
                Upgrade::Declined(_) => Err(PgError::Tls(TlsFailure {
                    message: "the server does not accept TLS connections (its ssl setting is off)"
                        .into(),
                    remedy: format!(
                        "turn ssl on in the server's configuration, or for a server on a trusted network change sslmode={} in DATABASE_URL to prefer",
                        settings.mode.name()
                    ),
                })),
            };
        }
        Err(last)
    }

    /// Connects without a password through the server's Unix socket in `socket_dir`, as libpq does
    /// for a directory host: only users who can enter that directory reach the socket.
    pub fn connect_socket(
        socket_dir: &Path,
        port: u16,
        user: &str,
        database: &str,
        timeout: Duration,
    ) -> Result<Client, PgError> {
        let stream = UnixStream::connect(socket_dir.join(format!(".s.PGSQL.{port}")))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let login = Login {
            user,
            password: "",
            database,
        };
        Client::start(Stream::Unix(stream), &login)
    }

    fn start(stream: Stream, login: &Login<'_>) -> Result<Client, PgError> {
        let mut client = Client {
            stream,
            buf: BytesMut::with_capacity(8192),
            server_version: String::new(),
        };
        client.startup(login)?;
        Ok(client)
    }

    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    fn startup(&mut self, login: &Login<'_>) -> Result<(), PgError> {
        self.send_message(|out| {
            frontend::startup_message(
                [
                    ("user", login.user),
                    ("database", login.database),
                    ("application_name", "xtask"),
                    ("client_encoding", "UTF8"),
                ],
                out,
            )
        })?;
        let mut scram = None;
        loop {
            match self.receive()? {
                Message::ParameterStatus(body) => {
                    if body.name()? == "server_version" {
                        self.server_version = body.value()?.to_owned();
                    }
                }
                Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ErrorResponse(body) => return Err(server_error(body.fields())?),
                Message::ReadyForQuery(_) => return Ok(()),
                message => self.authenticate(message, login, &mut scram)?,
            }
        }
    }

    /// Answers one authentication request of the startup. `scram` carries the SCRAM exchange
    /// across its three messages; anything but authentication is a protocol error here.
    fn authenticate(
        &mut self,
        message: Message,
        login: &Login<'_>,
        scram: &mut Option<sasl::ScramSha256>,
    ) -> Result<(), PgError> {
        let password = login.password.as_bytes();
        match message {
            Message::AuthenticationOk => {}
            Message::AuthenticationCleartextPassword => {
                self.send_message(|out| frontend::password_message(password, out))?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(login.user.as_bytes(), password, body.salt());
                self.send_message(|out| frontend::password_message(hash.as_bytes(), out))?;
            }
            Message::AuthenticationSasl(body) => *scram = Some(self.start_scram(body, password)?),
            Message::AuthenticationSaslContinue(body) => {
                let state = scram
                    .as_mut()
                    .ok_or_else(|| PgError::Protocol("SASL continue before start".into()))?;
                state.update(body.data())?;
                self.send_message(|out| frontend::sasl_response(state.message(), out))?;
            }
            Message::AuthenticationSaslFinal(body) => {
                scram
                    .as_mut()
                    .ok_or_else(|| PgError::Protocol("SASL final before start".into()))?
                    .finish(body.data())?;
            }
            _ => {
                return Err(PgError::Protocol(
                    "unexpected message during startup".into(),
                ));
            }
        }
        Ok(())
    }

    /// Begins SCRAM-SHA-256, the only SASL mechanism this client speaks, if the server offers it.
    fn start_scram(
        &mut self,
        body: AuthenticationSaslBody,
        password: &[u8],
    ) -> Result<sasl::ScramSha256, PgError> {
        let mut mechanisms = body.mechanisms();
        let mut offers_scram = false;
        while let Some(mechanism) = mechanisms.next()? {
            offers_scram |= mechanism == sasl::SCRAM_SHA_256;
        }
        if !offers_scram {
            return Err(PgError::Protocol("server offers no SCRAM-SHA-256".into()));
        }
        let state = sasl::ScramSha256::new(password, sasl::ChannelBinding::unsupported());
        self.send_message(|out| {
            frontend::sasl_initial_response(sasl::SCRAM_SHA_256, state.message(), out)
        })?;
        Ok(state)
    }

    /// Runs one or more statements with the simple query protocol and returns the text rows.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Row>, PgError> {
        self.send_message(|out| frontend::query(sql, out))?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            match self.receive()? {
                Message::DataRow(body) => {
                    let buffer = body.buffer();
                    let row = body
                        .ranges()
                        .map(|range| {
                            Ok(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned()))
                        })
                        .collect()?;
                    rows.push(row);
                }
                Message::ErrorResponse(body) => failure = Some(server_error(body.fields())?),
                Message::ReadyForQuery(_) => return failure.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    /// The first column of the first row, for queries that return one value.
    pub fn query_value(&mut self, sql: &str) -> Result<Option<String>, PgError> {
        Ok(self
            .query(sql)?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// Sends one frontend message. It is encoded in full before anything is written, so a
    /// message that fails to encode leaves nothing half-sent on the connection.
    fn send_message(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> io::Result<()>,
    ) -> Result<(), PgError> {
        let mut out = BytesMut::new();
        encode(&mut out)?;
        Ok(self.stream.write_all(&out)?)
    }

    fn receive(&mut self) -> Result<Message, PgError> {
        loop {
            if let Some(message) = Message::parse(&mut self.buf)? {
                return Ok(message);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(PgError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out);
    }
}

fn server_error(
    mut fields: postgres_protocol::message::backend::ErrorFields<'_>,
) -> Result<PgError, PgError> {
    let mut code = String::new();
    let mut message = String::new();
    while let Some(field) = fields.next()? {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    Ok(PgError::Server { code, message })
}

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn errors_classify() {
        let auth = PgError::Server {
            code: "28P01".into(),
            message: "password authentication failed".into(),
        };
        assert!(auth.is_auth_failure() && !auth.is_transient());
        let starting = PgError::Server {
            code: "57P03".into(),
            message: "the database system is starting up".into(),
        };
        assert!(starting.is_transient());
        let refused = PgError::Io(io::ErrorKind::ConnectionRefused.into());
        assert!(refused.is_transient());
        assert_eq!(refused.to_string(), "connection refused");
    }

    #[test]
    fn a_pg_hba_refusal_is_not_a_credentials_failure() {
        let server = |message: &str| PgError::Server {
            code: "28000".into(),
            message: message.into(),
        };
        let refused = server(
            r#"no pg_hba.conf entry for host "127.0.0.1", user "app", database "app", no encryption"#,
        )
        .refused(false);
        assert!(matches!(refused, PgError::Refused { tls: false, .. }));
        assert!(!refused.is_auth_failure() && !refused.is_transient());
        assert!(refused.remedy().unwrap().contains("sslmode=require"));
        let missing_role = server(r#"role "nobody" does not exist"#).refused(false);
        assert!(missing_role.is_auth_failure());
    }
}
