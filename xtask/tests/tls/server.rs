//! A throwaway PostgreSQL that speaks TLS, for the TLS tests: certificates made with rcgen,
//! a pg_hba.conf that admits TCP clients over TLS only, a role with a password, and a Drop
//! guard that stops the server even when a test fails.

use std::{
    fs,
    io::Write,
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::support::{PASSWORD, is_root};

/// The role that logs in with a client certificate instead of a password.
pub const CERT_USER: &str = "certuser";

/// Whether the server offers TLS; without it, its pg_hba.conf admits plain TCP instead.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ssl {
    On,
    Off,
}

pub struct TlsServer {
    pub port: u16,
    /// The CA that signed the server's certificate, for "localhost" only.
    pub ca: PathBuf,
    /// A CA that signed nothing the server presents.
    pub other_ca: PathBuf,
    /// A client certificate for [`CERT_USER`], signed by `ca`, and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    bin: PathBuf,
    /// The unprivileged user that runs the server when the tests run as root (initdb refuses root).
    run_as: Option<(String, u32, u32)>,
    data: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsServer {
    /// Starts a server, or prints why it cannot and returns `None`.
    pub fn start(ssl: Ssl) -> Option<TlsServer> {
        let Some(bin) = tls_capable_bin() else {
            eprintln!(
                "SKIPPED: no PostgreSQL server binaries built with TLS (pg_config --configure lacks --with-openssl); install Debian's postgresql to run the TLS tests"
            );
            return None;
        };
        let run_as = if is_root() {
            let Some(ids) = user_ids("postgres") else {
                eprintln!(
                    "SKIPPED: running as root, and there is no user postgres to run the server as"
                );
                return None;
            };
            Some(("postgres".to_owned(), ids.0, ids.1))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("xtask-tls-")
            .tempdir()
            .unwrap();
        // The server's user must reach the directory; xtask must read the CA files in it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        let server = TlsServer {
            port,
            ca: dir.path().join("ca.pem"),
            other_ca: dir.path().join("other-ca.pem"),
            client_cert: dir.path().join("client.pem"),
            client_key: dir.path().join("client.key"),
            bin,
            run_as,
            data,
            dir,
        };
        server.write_certificates();
        server.init(ssl);
        server.run_server(&[
            "-D",
            &server.data_str(),
            "-l",
            &server.path("log"),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        server.create_roles();
        Some(server)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn data_str(&self) -> String {
        self.data.display().to_string()
    }

    /// Gives `path` to the server's user, as PostgreSQL wants its key file owned by itself.
    fn own(&self, path: &Path) {
        if let Some((_, uid, gid)) = &self.run_as {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).unwrap();
        }
    }

    fn write_certificates(&self) {
        let ca = Ca::new("xtask test CA");
        let other = Ca::new("an unrelated CA");
        fs::write(&self.ca, &ca.pem).unwrap();
        fs::write(&self.other_ca, &other.pem).unwrap();
        let (cert, key) = ca.sign(
            &["localhost"],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write_private(&self.dir.path().join("server.pem"), &cert);
        write_private(&self.dir.path().join("server.key"), &key);
        let (cert, key) = ca.sign(&[], CERT_USER, ExtendedKeyUsagePurpose::ClientAuth);
        fs::write(&self.client_cert, cert).unwrap();
        write_private(&self.client_key, &key);
        self.own(self.dir.path());
        for name in ["server.pem", "server.key"] {
            self.own(&self.dir.path().join(name));
        }
    }

    fn init(&self, ssl: Ssl) {
        self.run_server(&[
            "-D",
            &self.data_str(),
            "-o",
            "-U admin -A trust -E UTF8 --no-sync",
            "initdb",
        ]);
        let socket_dir = self.dir.path().join("sock");
        fs::create_dir(&socket_dir).unwrap();
        fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o700)).unwrap();
        self.own(&socket_dir);
        let (hba, tls_settings) = match ssl {
            Ssl::On => (
                format!(
                    "local all all trust\nhostssl all {CERT_USER} 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
                ),
                format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
                    self.path("server.pem"),
                    self.path("server.key"),
                    self.ca.display()
                ),
            ),
            Ssl::Off => (
                "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n".to_owned(),
                "ssl = off\n".to_owned(),
            ),
        };
        // Overwriting keeps the files' owner, the server's user.
        fs::write(self.data.join("pg_hba.conf"), hba).unwrap();
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        write!(
            conf,
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\n{tls_settings}",
            self.port,
            socket_dir.display()
        )
        .unwrap();
    }

    /// pg_ctl, run as the server's user.
    fn pg_ctl(&self) -> Command {
        let pg_ctl = self.bin.join("pg_ctl");
        match &self.run_as {
            Some((user, _, _)) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(pg_ctl);
                cmd
            }
            None => Command::new(pg_ctl),
        }
    }

    /// Runs pg_ctl; fails the test with its output and the server's log if it fails.
    fn run_server(&self, args: &[&str]) {
        let output = self
            .pg_ctl()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// The roles and database, through the Unix socket; the SQL goes in on stdin, so the
    /// password never appears in a process list.
    fn create_roles(&self) {
        let mut psql = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "admin",
                "-d",
                "postgres",
            ])
            .args(["-h", &self.path("sock"), "-p", &self.port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let sql = format!(
            "CREATE ROLE app LOGIN PASSWORD '{PASSWORD}';\nCREATE DATABASE app OWNER app;\nCREATE ROLE {CERT_USER} LOGIN;\n"
        );
        psql.stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        assert!(psql.wait().unwrap().success(), "creating the roles failed");
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let data = self.data_str();
        let _ = self
            .pg_ctl()
            .args(["-D", data.as_str(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A certificate authority made for one test run.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (subject alternative names) and its key, both PEM.
    fn sign(
        &self,
        names: &[&str],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// PostgreSQL and libpq refuse a key file that others can read.
fn write_private(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// Server binaries built with OpenSSL: `PG_TLS_BIN`, else the highest
/// `/usr/lib/postgresql/*/bin` whose pg_config says so.
fn tls_capable_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .collect();
    candidates.sort_by_key(|dir| {
        let version = dir
            .parent()
            .and_then(|v| v.file_name())
            .map(|v| v.to_string_lossy().into_owned());
        std::cmp::Reverse(version.and_then(|v| v.parse::<u32>().ok()))
    });
    std::env::var_os("PG_TLS_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates)
        .find(|bin| {
            bin.join("initdb").exists()
                && bin.join("psql").exists()
                && Command::new(bin.join("pg_config"))
                    .arg("--configure")
                    .output()
                    .is_ok_and(|out| {
                        let flags = String::from_utf8_lossy(&out.stdout);
                        flags.contains("--with-openssl") || flags.contains("--with-ssl=openssl")
                    })
        })
}
