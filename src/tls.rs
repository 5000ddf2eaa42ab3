//! TLS settings to a rustls server configuration: the certificate, key and client CA files
//! of `-o ssl_*` read (at start, and again by `refresh_certs` or SIGHUP), client
//! verification by `ssl_verify_mode`, the cipher list and minimum version mapped onto what
//! rustls has, the session cache, and the counters `stats` reports. New connections take
//! the configuration current when they are accepted; a reload never touches open ones.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ProducesTickets;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, ServerConnection, SupportedCipherSuite};

use crate::config::{TlsSettings, VerifyMode};

/// Sessions the cache keeps with `ssl_session_cache` (OpenSSL's default size, which
/// memcached keeps).
const SESSION_CACHE_SIZE: usize = 20 * 1024;

/// The server's TLS state, shared by the accept loops and `refresh_certs`.
pub struct Tls {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    /// Without `ssl_session_cache`: the keys of stateless session tickets, so that clients
    /// still resume (as OpenSSL's tickets let them in memcached).
    tickets: Option<Arc<dyn ProducesTickets>>,
    current: RwLock<Loaded>,
    pub counters: Arc<TlsCounters>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

struct Loaded {
    config: Arc<ServerConfig>,
    at: Instant,
}

/// What `stats` reports of TLS.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Handshakes that failed: plain text or garbage on a TLS port, a refused client
    /// certificate, a client that left mid-handshake.
    pub handshake_errors: AtomicU64,
    /// Sessions put in the session cache (`ssl_session_cache`).
    pub new_sessions: AtomicU64,
}

impl TlsCounters {
    /// `stats reset` zeroes both, as memcached's does.
    pub fn reset(&self) {
        let Self { handshake_errors, new_sessions } = self;
        for c in [handshake_errors, new_sessions] {
            c.store(0, Relaxed);
        }
    }
}

impl Tls {
    /// Reads the files `settings` names and builds the configuration; the error is one
    /// line for the operator.
    pub fn load(settings: &TlsSettings) -> Result<Self, String> {
        let provider = Arc::new(provider(settings)?);
        let counters = Arc::new(TlsCounters::default());
        let sessions: Arc<dyn StoresServerSessions> = if settings.session_cache {
            Arc::new(CountingSessions {
                inner: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
                counters: counters.clone(),
            })
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        let tickets = match settings.session_cache {
            true => None,
            false => Some(rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("-Z: {e}"))?),
        };
        let config = build(settings, &provider, &sessions, tickets.as_ref())?;
        Ok(Self {
            settings: settings.clone(),
            provider,
            sessions,
            tickets,
            current: RwLock::new(Loaded { config, at: Instant::now() }),
            counters,
        })
    }

    /// Reads the certificate, key and CA files again; connections accepted from now on
    /// use them. On an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = build(&self.settings, &self.provider, &self.sessions, self.tickets.as_ref())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Loaded { config, at: Instant::now() };
        Ok(())
    }

    /// Seconds since the certificates were last (re)loaded.
    pub fn since_refresh(&self) -> u64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).at.elapsed().as_secs()
    }

    /// The server side of a new connection's TLS, under the current configuration.
    pub fn accept(&self) -> io::Result<ServerConnection> {
        let config = self.current.read().unwrap_or_else(|e| e.into_inner()).config.clone();
        ServerConnection::new(config).map_err(io::Error::other)
    }
}

/// The aws-lc-rs provider (rustls's default) with the cipher suites `ssl_ciphers` leaves.
fn provider(settings: &TlsSettings) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(list) = &settings.ciphers {
        provider.cipher_suites = cipher_suites(list, &provider.cipher_suites)?;
    }
    Ok(provider)
}

/// OpenSSL's names of the TLS 1.2 suites rustls has.
const OPENSSL_NAMES: &[(&str, rustls::CipherSuite)] = {
    use rustls::CipherSuite::*;
    &[
        ("ECDHE-ECDSA-AES256-GCM-SHA384", TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ("ECDHE-RSA-AES256-GCM-SHA384", TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ("ECDHE-RSA-AES128-GCM-SHA256", TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ("ECDHE-RSA-CHACHA20-POLY1305", TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ]
};

/// OpenSSL cipher-list words for kinds of suite rustls never offers: excluding them
/// (`!aNULL`, `-MD5`) changes nothing.
const NEVER_OFFERED: &[&str] =
    &["aNULL", "eNULL", "NULL", "MD5", "RC4", "DES", "3DES", "EXP", "EXPORT", "LOW", "MEDIUM", "PSK", "SRP", "DSS"];

/// Maps an OpenSSL cipher list (`ssl_ciphers`) onto rustls's suites. As in memcached,
/// the list governs TLS 1.2 (OpenSSL's `SSL_CTX_set_cipher_list`); the TLS 1.3 suites
/// stay. It takes suite names (OpenSSL's or IANA's), `DEFAULT`, `ALL` and `HIGH` (every
/// suite rustls has), and `!`/`-` exclusions; anything rustls cannot express is refused.
fn cipher_suites(list: &str, all: &[SupportedCipherSuite]) -> Result<Vec<SupportedCipherSuite>, String> {
    let is_tls12 = |s: &SupportedCipherSuite| s.version() == &rustls::version::TLS12;
    let mut chosen: Vec<rustls::CipherSuite> = Vec::new();
    let named = |word: &str| {
        OPENSSL_NAMES
            .iter()
            .find(|(name, _)| *name == word)
            .map(|&(_, suite)| suite)
            .or_else(|| all.iter().filter(|s| is_tls12(s)).map(|s| s.suite()).find(|s| format!("{s:?}") == word))
    };
    for word in list.split([':', ',', ' ']).filter(|w| !w.is_empty()) {
        let (remove, word) = match word.strip_prefix(['!', '-']) {
            Some(w) => (true, w),
            None => (false, word.strip_prefix('+').unwrap_or(word)),
        };
        if remove && NEVER_OFFERED.contains(&word) {
            continue;
        }
        let suites: Vec<_> = match (word, named(word)) {
            ("DEFAULT" | "ALL" | "HIGH", _) => all.iter().filter(|s| is_tls12(s)).map(|s| s.suite()).collect(),
            (_, Some(suite)) => vec![suite],
            _ => {
                let have: Vec<_> = OPENSSL_NAMES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "Error setting the provided cipher(s): {list}: '{word}' is not one Larder's TLS (rustls) \
                     has; it has {}",
                    have.join(":")
                ));
            }
        };
        if remove {
            chosen.retain(|s| !suites.contains(s));
        } else {
            chosen.extend(suites.into_iter().filter(|s| !chosen.contains(s)).collect::<Vec<_>>());
        }
    }
    if chosen.is_empty() {
        return Err(format!("Error setting the provided cipher(s): {list}: that leaves none to offer"));
    }
    let mut suites: Vec<_> = all.iter().filter(|s| !is_tls12(s)).copied().collect();
    suites.extend(chosen.iter().filter_map(|c| all.iter().find(|s| s.suite() == *c)));
    Ok(suites)
}

fn build(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    sessions: &Arc<dyn StoresServerSessions>,
    tickets: Option<&Arc<dyn ProducesTickets>>,
) -> Result<Arc<ServerConfig>, String> {
    let chain_path = settings.chain_cert.as_ref().ok_or("-Z: no ssl_chain_cert")?;
    let chain_error = |e: &dyn std::fmt::Display| loading("certificate chain", chain_path, e);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(chain_path).and_then(Iterator::collect).map_err(|e| chain_error(&e))?;
    if chain.is_empty() {
        return Err(chain_error(&"no certificate in it"));
    }
    let key_path = settings.key.as_ref().unwrap_or(chain_path);
    let key_error = |e: &dyn std::fmt::Display| loading("key", key_path, e);
    let key = if settings.keyformat == 2 {
        let der = std::fs::read(key_path).map_err(|e| key_error(&e))?;
        PrivateKeyDer::try_from(der).map_err(|e| key_error(&e))?
    } else {
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| key_error(&e))?
    };
    let versions: &[&rustls::SupportedProtocolVersion] =
        if settings.min_version == 3 { &[&rustls::version::TLS13] } else { rustls::ALL_VERSIONS };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("-Z: {e}"))?
        .with_client_cert_verifier(client_verifier(settings, provider)?);
    // A certificate that does not parse is the chain's fault; a key that does not match it
    // is the key's, as memcached words them.
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InvalidCertificate(_) => chain_error(&e),
        _ => key_error(&e),
    })?;
    config.session_storage = sessions.clone();
    if let Some(tickets) = tickets {
        config.ticketer = tickets.clone();
    }
    Ok(Arc::new(config))
}

/// Who may connect under `ssl_verify_mode`. A mode above 0 needs `ssl_ca_cert`: memcached
/// starts without one and then fails every client's handshake; Larder says so at start.
fn client_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    if settings.verify_mode == VerifyMode::None {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let Some(ca_path) = &settings.ca_cert else {
        return Err("ssl_verify_mode above 0 needs ssl_ca_cert: the CAs client certificates must chain to".into());
    };
    let ca_error = |e: &dyn std::fmt::Display| loading("CA certificate", ca_path, e);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_path).map_err(|e| ca_error(&e))? {
        roots.add(cert.map_err(|e| ca_error(&e))?).map_err(|e| ca_error(&e))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if settings.verify_mode == VerifyMode::Request { builder.allow_unauthenticated() } else { builder };
    builder.build().map_err(|e| ca_error(&e))
}

/// memcached's words for a file that would not load (at start, and as `refresh_certs`'s reply).
fn loading(what: &str, path: &std::path::Path, e: &dyn std::fmt::Display) -> String {
    format!("Error loading the {what}: {} : {e}", path.display())
}

/// rustls's session cache, counting the sessions put in it (memcached's `ssl_new_sessions`).
#[derive(Debug)]
struct CountingSessions {
    inner: Arc<ServerSessionMemoryCache>,
    counters: Arc<TlsCounters>,
}

impl StoresServerSessions for CountingSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.counters.new_sessions.fetch_add(1, Relaxed);
        self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_lists_map_onto_rustls_or_are_refused() {
        let all = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        let tls12 = |v: &[SupportedCipherSuite]| {
            v.iter()
                .filter(|s| s.version() == &rustls::version::TLS12)
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        };
        let got = cipher_suites("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384", &all).unwrap();
        assert_eq!(tls12(&got), ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]);
        assert_eq!(got.len() - 2, all.iter().filter(|s| s.version() == &rustls::version::TLS13).count());
        let high = cipher_suites("HIGH:!aNULL:!MD5:-ECDHE-RSA-CHACHA20-POLY1305", &all).unwrap();
        assert_eq!(tls12(&high).len(), 5);
        assert!(!tls12(&high).contains(&"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256".to_string()));
        assert_eq!(tls12(&cipher_suites("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", &all).unwrap()).len(), 1);
        assert!(cipher_suites("AES128-SHA", &all).unwrap_err().contains("'AES128-SHA'"));
        assert!(cipher_suites("garbage", &all).is_err());
        assert!(cipher_suites("!aNULL", &all).unwrap_err().contains("leaves none"));
    }
}
