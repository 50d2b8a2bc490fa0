//! TLS for `check`: the handshake with the policy host or an MX, with the same PKIX verification
//! as the adapters (webpki, TLS 1.2 or 1.3, the *ring* provider), and the details an operator
//! wants to see: protocol version and the certificate's subject, issuer, names and expiry, also
//! when verification fails.

use std::net::TcpStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mta_sts_blocking::DeadlineStream;
use mta_sts_core::io::{CertificateProblem, FetchFailure};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The verifier of the adapters (webpki against the trust anchors), remembering the end-entity
/// certificate it was shown so that `check` can describe it even when it is rejected.
#[derive(Debug)]
pub(crate) struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What `check` shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// The DNS names of the subjectAltName extension.
    pub(crate) names: Vec<String>,
    /// The end of the validity period, in seconds since 1970.
    pub(crate) not_after: i64,
}

impl CertInfo {
    /// Parses a DER certificate (x509-parser); `None` when it is not one.
    pub(crate) fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names,
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// The expiry as an RFC 3339 UTC time, e.g. `2027-01-01T00:00:00Z`.
    pub(crate) fn expiry(&self) -> String {
        u64::try_from(self.not_after).map_or_else(
            |_| format!("{} s before 1970", self.not_after.unsigned_abs()),
            |s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string(),
        )
    }

    /// Whole days from now until the expiry (negative once expired).
    pub(crate) fn days_left(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.not_after.saturating_sub(now).div_euclid(86_400)
    }

    /// One line: subject, names, issuer, expiry.
    pub(crate) fn summary(&self) -> String {
        let names = if self.names.is_empty() {
            "no DNS names".to_owned()
        } else {
            self.names.join(", ")
        };
        format!(
            "subject {}, names [{names}], issuer {}, expires {} ({} days)",
            self.subject,
            self.issuer,
            self.expiry(),
            self.days_left()
        )
    }
}

/// The result of a TLS handshake.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// The connection, when the handshake succeeded.
    pub(crate) stream: Option<StreamOwned<ClientConnection, DeadlineStream>>,
    /// The negotiated version, e.g. `TLSv1_3`.
    pub(crate) version: Option<String>,
    /// The end-entity certificate presented, if any was.
    pub(crate) cert: Option<CertInfo>,
    /// Why the handshake failed (classified as the adapters do), with a sentence for operators.
    pub(crate) error: Option<(FetchFailure, String)>,
}

/// TLS client settings shared by every handshake of one `check`.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    verifier: Arc<WebPkiServerVerifier>,
}

impl Tls {
    pub(crate) fn new(roots: RootCertStore) -> Result<Self, String> {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), mta_sts_net::provider())
                .build()
                .map_err(|e| format!("cannot use the trust anchors: {e}"))?;
        Ok(Self { verifier })
    }

    /// A TLS 1.2/1.3 handshake on `tcp` for `host` (SNI and the name the certificate must be
    /// valid for), offering `alpn`, finished before `deadline`.
    pub(crate) fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
        alpn: &[&[u8]],
        deadline: Instant,
    ) -> Handshake {
        let failed = |failure: FetchFailure, why: String| Handshake {
            stream: None,
            version: None,
            cert: None,
            error: Some((failure, why)),
        };
        let name = match mta_sts_net::server_name(host) {
            Ok(n) => n,
            Err(e) => return failed(FetchFailure::Tls(e.to_string()), e.to_string()),
        };
        let (config, recording) = match self.config(alpn) {
            Ok(c) => c,
            Err(e) => return failed(FetchFailure::Tls(e.to_string()), e.to_string()),
        };
        let tcp = DeadlineStream::new(tcp, deadline);
        let result = mta_sts_blocking::tls_handshake(config, name, tcp);
        let cert = recording.certificate();
        match result {
            Err(e) => {
                let failure = mta_sts_net::classify_tls_error(&e);
                let why = explain(&failure, &e, host, cert.as_ref());
                Handshake {
                    stream: None,
                    version: None,
                    cert,
                    error: Some((failure, why)),
                }
            }
            Ok(stream) => Handshake {
                version: stream.conn.protocol_version().map(version_name),
                stream: Some(stream),
                cert,
                error: None,
            },
        }
    }

    /// The TLS configuration of a handshake (TLS 1.2 or 1.3, the *ring* provider, `alpn`) whose
    /// verifier remembers the certificate it is shown.
    pub(crate) fn config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<(Arc<ClientConfig>, Arc<Recording>), rustls::Error> {
        let recording = Arc::new(Recording {
            inner: Arc::clone(&self.verifier),
            seen: Mutex::new(None),
        });
        let mut config = ClientConfig::builder_with_provider(mta_sts_net::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .dangerous()
            .with_custom_certificate_verifier(recording.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok((Arc::new(config), recording))
    }
}

/// A TLS version as `check` shows it, e.g. `TLS 1.3`.
pub(crate) fn version_name(v: rustls::ProtocolVersion) -> String {
    format!("{v:?}").replace("TLSv1_", "TLS 1.")
}

impl Recording {
    /// The certificate the verifier was shown, if any and if it parses.
    pub(crate) fn certificate(&self) -> Option<CertInfo> {
        let der = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        der.and_then(|der| CertInfo::parse(&der))
    }
}

/// A sentence about a failed handshake, for operators: its classification (the adapters', from
/// `e`) with what the certificate shows where that helps (its names, expiry or issuer).
pub(crate) fn explain(
    failure: &FetchFailure,
    e: &dyn std::fmt::Display,
    host: &str,
    cert: Option<&CertInfo>,
) -> String {
    match failure {
        FetchFailure::Certificate(CertificateProblem::NameMismatch) => {
            match cert.filter(|c| !c.names.is_empty()) {
                Some(c) => format!(
                    "the certificate is not valid for {host}: it names {}",
                    c.names.join(", ")
                ),
                None => format!(
                    "the certificate is not valid for {host}: it has no DNS name (subjectAltName)"
                ),
            }
        }
        FetchFailure::Certificate(p @ CertificateProblem::Expired) => {
            format!(
                "{p}{}",
                cert.map_or_else(String::new, |c| format!(" ({})", c.expiry()))
            )
        }
        FetchFailure::Certificate(p @ CertificateProblem::UnknownIssuer) => format!(
            "{p}{}",
            cert.map_or_else(String::new, |c| format!(" (issuer {})", c.issuer))
        ),
        FetchFailure::Certificate(p) => p.to_string(),
        FetchFailure::Tls(d) => format!("TLS error: {d}"),
        _ => format!("TLS handshake failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use rustls::{AlertDescription, CertificateError};

    use super::*;

    /// Each kind of handshake failure, read from the adapters' classification, in the words
    /// `check` has always used.
    #[test]
    fn handshake_failures_explained_from_their_classification() {
        let cert = CertInfo {
            subject: "CN=mx.example".into(),
            issuer: "CN=Some CA".into(),
            names: vec!["a.example".into(), "*.b.example".into()],
            not_after: 978_307_200,
        };
        let nameless = CertInfo {
            names: Vec::new(),
            ..cert.clone()
        };
        let tls = |e: rustls::Error| Error::new(ErrorKind::InvalidData, e);
        let bad = |c: CertificateError| tls(rustls::Error::InvalidCertificate(c));
        let alert = rustls::Error::AlertReceived(AlertDescription::HandshakeFailure);
        let alert_text = format!("TLS error: {alert}");
        let cases = [
            (
                bad(CertificateError::NotValidForName),
                Some(&cert),
                "the certificate is not valid for mx.example: it names a.example, *.b.example",
            ),
            (
                bad(CertificateError::NotValidForName),
                Some(&nameless),
                "the certificate is not valid for mx.example: it has no DNS name (subjectAltName)",
            ),
            (
                bad(CertificateError::Expired),
                Some(&cert),
                "the certificate has expired (2001-01-01T00:00:00Z)",
            ),
            (
                bad(CertificateError::Expired),
                None,
                "the certificate has expired",
            ),
            (
                bad(CertificateError::NotValidYet),
                Some(&cert),
                "the certificate is not valid yet",
            ),
            (
                bad(CertificateError::UnknownIssuer),
                Some(&cert),
                "the certificate is not issued by a trusted CA (issuer CN=Some CA)",
            ),
            (
                bad(CertificateError::BadSignature),
                None,
                "the certificate is not valid: BadSignature",
            ),
            (
                tls(rustls::Error::NoCertificatesPresented),
                None,
                "no certificate was presented",
            ),
            (tls(alert), None, &alert_text),
            (
                Error::from(ErrorKind::TimedOut),
                None,
                "TLS handshake failed: timed out",
            ),
            (
                Error::other("the TLS handshake did not finish"),
                None,
                "TLS handshake failed: the TLS handshake did not finish",
            ),
        ];
        for (e, cert, text) in cases {
            let failure = mta_sts_net::classify_tls_error(&e);
            assert_eq!(explain(&failure, &e, "mx.example", cert), text, "{e:?}");
        }
    }
}
