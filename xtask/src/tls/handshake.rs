//! The TLS half of xtask's PostgreSQL client: the SSLRequest exchange, then a blocking rustls
//! session over the TCP stream that checks the server's certificate as `sslmode` says.

use std::{
    fmt, fs,
    io::{self, Read, Write},
    net::{IpAddr, TcpStream},
    path::Path,
    sync::Arc,
};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

use super::{RootCert, TlsSettings, TlsVersion};
use crate::pg::PgError;

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// What a TLS problem is and what to do about it; waiting will not cure it.
#[derive(Debug, Clone)]
pub struct TlsFailure {
    pub message: String,
    pub remedy: String,
}

impl TlsFailure {
    fn new(message: impl Into<String>, remedy: impl Into<String>) -> TlsFailure {
        TlsFailure {
            message: message.into(),
            remedy: remedy.into(),
        }
    }

    /// A setting that [`TlsSettings::from_url`] refused: its message already says what to do.
    pub fn settings(message: String) -> TlsFailure {
        match message.split_once(": ") {
            Some((what, remedy)) => TlsFailure::new(what, remedy),
            None => TlsFailure::new(message, "fix DATABASE_URL"),
        }
    }

    /// A TLS error met after the handshake, such as an alert the server sends once it has
    /// seen the client's certificate; `None` for a plain I/O error.
    pub fn from_io(error: &io::Error) -> Option<TlsFailure> {
        let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(describe(tls, &Describe::default()))
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The outcome of asking for TLS.
pub enum Upgrade {
    Tls(Box<TlsStream>),
    /// The server answered `N`: its `ssl` setting is off.
    Declined(TcpStream),
}

/// Sends the SSLRequest and, when the server agrees, completes the handshake on `tcp`.
pub fn start_tls(
    mut tcp: TcpStream,
    settings: &TlsSettings,
    host: &str,
) -> Result<Upgrade, PgError> {
    // Built first, so that an unreadable CA file is reported whatever the server does.
    let config = client_config(settings).map_err(PgError::Tls)?;
    let name = server_name(host, tcp.peer_addr()?.ip(), settings.verify_host)?;
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request)?;
    // Exactly one byte: anything the server sent after it must go through TLS, not around it.
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)?;
    match answer[0] {
        b'S' => {}
        b'N' => return Ok(Upgrade::Declined(tcp)),
        other => {
            return Err(PgError::Protocol(format!(
                "the server answered the SSL request with {:?}",
                char::from(other)
            )));
        }
    }
    let context = Describe::of(settings, host);
    let connection = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| PgError::Tls(describe(&e, &context)))?;
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            let tls = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            return Err(match tls {
                Some(tls) => PgError::Tls(describe(tls, &context)),
                None => PgError::Io(e),
            });
        }
    }
    Ok(Upgrade::Tls(Box::new(stream)))
}

/// The name the certificate must carry, also sent as SNI. A host that is no valid DNS name
/// cannot be checked; without `verify-full` it need not be, and the address stands in.
fn server_name(
    host: &str,
    peer: IpAddr,
    verify_host: bool,
) -> Result<ServerName<'static>, PgError> {
    match ServerName::try_from(host.to_owned()) {
        Ok(name) => Ok(name),
        Err(_) if !verify_host => Ok(ServerName::IpAddress(peer.into())),
        Err(_) => Err(PgError::Tls(TlsFailure::new(
            format!("the host {host:?} is not a name a certificate can be checked against"),
            "connect by the server's DNS name or IP address, or use sslmode=verify-ca",
        ))),
    }
}

fn client_config(settings: &TlsSettings) -> Result<ClientConfig, TlsFailure> {
    // The provider sqlx uses too, so that xtask compiles no second crypto backend.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::V1_2, &rustls::version::TLS12),
        (TlsVersion::V1_3, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
    .map(|(_, version)| version)
    .collect();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| {
            TlsFailure::new(
                format!("cannot set up TLS: {e}"),
                "check ssl_min_protocol_version and ssl_max_protocol_version",
            )
        })?;
    let verifier: Arc<dyn ServerCertVerifier> = match &settings.verify {
        None => Arc::new(AnyCertificate(Arc::clone(&provider))),
        Some(root) => {
            let chain = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(root)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| TlsFailure::new(format!("cannot use the CA in sslrootcert: {e}"), "point sslrootcert at the CA certificate (PEM) that signed the server's certificate"))?;
            if settings.verify_host {
                chain
            } else {
                Arc::new(ChainOnly(chain))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &settings.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key) = client_identity(cert, key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsFailure::new(
                    format!("cannot use the client certificate: {e}"),
                    "check that sslcert and sslkey hold a certificate and its own private key",
                )
            })?
        }
    };
    config.enable_sni = settings.sni;
    Ok(config)
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsFailure> {
    fs::read(path).map_err(|e| {
        TlsFailure::new(
            format!("cannot read {key} {}: {e}", path.display()),
            format!("make {key} in DATABASE_URL a readable PEM file"),
        )
    })
}

fn root_store(root: &RootCert) -> Result<RootCertStore, TlsFailure> {
    let path = match root {
        RootCert::System => {
            return Ok(RootCertStore::from_iter(
                webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
            ));
        }
        RootCert::File(path) => path,
    };
    let pem = read("sslrootcert", path)?;
    let mut store = RootCertStore::empty();
    let (added, _) = store
        .add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
    if added == 0 {
        return Err(TlsFailure::new(
            format!("sslrootcert {} holds no PEM certificate", path.display()),
            "point sslrootcert at the CA certificate (PEM, -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(store)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(cert: &Path, key: &Path) -> Result<Identity, TlsFailure> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&read("sslcert", cert)?)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsFailure::new(
            format!("sslcert {} holds no PEM certificate", cert.display()),
            "point sslcert at the client certificate (PEM)",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("sslkey", key)?).map_err(|_| {
        TlsFailure::new(
            format!(
                "sslkey {} holds no unencrypted PEM private key",
                key.display()
            ),
            "point sslkey at the client certificate's private key (PEM, not encrypted)",
        )
    })?;
    Ok((chain, key))
}

/// What error messages name: the host and where the trusted CAs came from.
#[derive(Default)]
struct Describe {
    host: String,
    ca: String,
}

impl Describe {
    fn of(settings: &TlsSettings, host: &str) -> Describe {
        let ca = match &settings.verify {
            Some(RootCert::File(path)) => format!("the CA in {}", path.display()),
            Some(RootCert::System) => "a public CA (sslrootcert=system)".to_owned(),
            None => "a trusted CA".to_owned(),
        };
        Describe {
            host: host.to_owned(),
            ca,
        }
    }
}

/// A rustls error as a message about the server and a remedy for the user.
fn describe(error: &rustls::Error, context: &Describe) -> TlsFailure {
    use CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => TlsFailure::new(
            format!("the server's certificate is not signed by {}", context.ca),
            "set sslrootcert in DATABASE_URL to the CA certificate that signed the server's certificate",
        ),
        rustls::Error::InvalidCertificate(C::NotValidForNameContext { presented, .. }) => {
            TlsFailure::new(
                format!(
                    "the server's certificate is not valid for the host {:?} (it names {})",
                    context.host,
                    presented
                        .iter()
                        .map(|name| plain_name(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "connect by a name the certificate lists, or use sslmode=verify-ca to check only the CA",
            )
        }
        rustls::Error::InvalidCertificate(C::NotValidForName) => TlsFailure::new(
            format!(
                "the server's certificate is not valid for the host {:?}",
                context.host
            ),
            "connect by a name the certificate lists, or use sslmode=verify-ca to check only the CA",
        ),
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => TlsFailure::new(
            format!("the server's certificate is outside its validity period ({error})"),
            "renew the server's certificate, or check this machine's clock",
        ),
        rustls::Error::InvalidCertificate(other) => TlsFailure::new(
            format!("the server's certificate was rejected ({other})"),
            "check the server's certificate and sslrootcert",
        ),
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            TlsFailure::new(
                "the server requires a client certificate",
                "set sslcert and sslkey in DATABASE_URL",
            )
        }
        rustls::Error::AlertReceived(alert) => TlsFailure::new(
            format!("the server ended the TLS handshake ({alert:?})"),
            "check the server's TLS settings against ssl_min_protocol_version, ssl_max_protocol_version, sslcert and sslkey",
        ),
        other => TlsFailure::new(
            format!("the TLS handshake failed ({other})"),
            "check sslmode in DATABASE_URL and the server's TLS settings",
        ),
    }
}

/// A name as rustls presents it, `DnsName("db.example.com")` or `IpAddress(10.0.0.1)`,
/// without the wrapping.
fn plain_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, inner)| inner.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

/// `require` without a CA: encryption, no check of who answers (libpq's meaning).
/// The handshake signatures are still verified, so the session is with the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::plain_name;

    #[test]
    fn presented_names_lose_their_wrapping() {
        assert_eq!(plain_name(r#"DnsName("localhost")"#), "localhost");
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(plain_name("db.example.com"), "db.example.com");
    }
}
