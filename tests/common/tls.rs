//! TLS test support: certificates made by the test (rcgen), written to a temporary folder
//! that memcached `-Z` and Larder both read; servers that serve TLS; a blocking rustls
//! client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use larder::clock::Clock;
use larder::config::{Config, TlsSettings};
use larder::tls::Tls;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::TestServer;

/// A certificate authority of the test's own.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` with serial number `serial`; `expired`: valid only in 2020.
    pub fn issue(&self, names: &[&str], serial: u64, expired: bool) -> Pem {
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.serial_number = Some(SerialNumber::from(serial));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem { cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// A folder of certificate files, removed on drop: `ca.pem`, `server.pem` and `server.key`
/// (serial 1, for 127.0.0.1 and localhost), and a client's `client.pem`/`client.key`.
pub struct Certs {
    pub dir: PathBuf,
    pub ca: Ca,
    pub client: Pem,
}

impl Certs {
    pub fn new() -> Self {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("larder-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("Larder test CA");
        let client = ca.issue(&["client"], 100, false);
        let certs = Self { dir, ca, client };
        std::fs::write(certs.path("ca.pem"), certs.ca.pem()).unwrap();
        certs.install_server(&certs.ca.issue(&["127.0.0.1", "localhost"], 1, false));
        std::fs::write(certs.path("client.pem"), &certs.client.cert).unwrap();
        std::fs::write(certs.path("client.key"), &certs.client.key).unwrap();
        certs
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `pem` as the server's certificate and key files (as an operator replaces them
    /// before `refresh_certs`).
    pub fn install_server(&self, pem: &Pem) {
        std::fs::write(self.path("server.pem"), &pem.cert).unwrap();
        std::fs::write(self.path("server.key"), &pem.key).unwrap();
    }

    /// Larder's settings for these files: `-Z -o ssl_chain_cert=..,ssl_key=..`.
    pub fn settings(&self) -> TlsSettings {
        TlsSettings {
            enabled: true,
            chain_cert: Some(self.path("server.pem")),
            key: Some(self.path("server.key")),
            ..TlsSettings::default()
        }
    }

    /// memcached's options for the same.
    pub fn memcached_args(&self) -> Vec<String> {
        let (cert, key) = (self.path("server.pem"), self.path("server.key"));
        vec!["-Z".into(), "-o".into(), format!("ssl_chain_cert={},ssl_key={}", cert.display(), key.display())]
    }

    /// A client that trusts this CA and shows `identity` if given.
    pub fn client_config(&self, identity: Option<&Pem>) -> Arc<ClientConfig> {
        client_config(&self.ca.pem(), identity)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn client_config(ca_pem: &str, identity: Option<&Pem>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert.as_bytes()).map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap()).unwrap()
        }
    })
}

/// Starts an in-process Larder serving TLS with `config.tls`.
pub fn spawn(config: Config) -> TestServer {
    let tls = Tls::load(&config.tls).expect("loading the test certificates");
    super::spawn_listener(config, Clock::system(), Some(tls))
}

/// A blocking TLS client (5 s read timeout); the handshake happens on first use.
pub struct TlsClient {
    pub s: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsClient {
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Self {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let conn = ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap().to_owned()).unwrap();
        Self { s: StreamOwned::new(conn, tcp) }
    }

    /// Finishes the handshake; the error the server's answer makes, if any.
    pub fn handshake(&mut self) -> std::io::Result<()> {
        while self.s.conn.is_handshaking() {
            self.s.conn.complete_io(&mut self.s.sock)?;
        }
        Ok(())
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
        self.s.flush().expect("flush");
    }

    pub fn expect(&mut self, want: &[u8]) {
        let mut got = vec![0; want.len()];
        if let Err(e) = self.s.read_exact(&mut got) {
            panic!("reading {:?}: {e}", String::from_utf8_lossy(&want[..want.len().min(200)]));
        }
        assert!(got == want, "got {:?}", String::from_utf8_lossy(&got[..got.len().min(200)]));
    }

    pub fn roundtrip(&mut self, req: &[u8], want: &[u8]) {
        self.send(req);
        self.expect(want);
    }

    /// Sends `stats` and returns the value of one field.
    pub fn stat(&mut self, name: &str) -> String {
        self.send(b"stats\r\n");
        let mut all = Vec::new();
        while !all.ends_with(b"END\r\n") {
            let mut buf = [0u8; 4096];
            let n = self.s.read(&mut buf).expect("stats");
            assert!(n > 0, "closed during stats");
            all.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(all).unwrap();
        let prefix = format!("STAT {name} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {name} in {text}")).to_string()
    }

    /// The serial number of the certificate the server showed.
    pub fn server_serial(&self) -> Vec<u8> {
        let cert = &self.s.conn.peer_certificates().expect("handshake done")[0];
        serial_of(cert)
    }
}

/// A certificate's serial number, read from its DER (tbsCertificate's second field).
pub fn serial_of(cert: &[u8]) -> Vec<u8> {
    // SEQUENCE { SEQUENCE tbs { [0] version, INTEGER serial, ... } }
    fn header(b: &[u8]) -> (usize, usize) {
        let len = b[1] as usize;
        if len < 0x80 {
            return (2, len);
        }
        let n = len & 0x7f;
        (2 + n, b[2..2 + n].iter().fold(0, |a, &x| a << 8 | x as usize))
    }
    let (h, _) = header(cert);
    let tbs = &cert[h..];
    let (h, _) = header(tbs);
    let mut rest = &tbs[h..];
    if rest[0] == 0xa0 {
        let (h, len) = header(rest);
        rest = &rest[h + len..];
    }
    let (h, len) = header(rest);
    rest[h..h + len].to_vec()
}
