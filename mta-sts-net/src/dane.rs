//! DANE for SMTP (RFC 7672) on the STARTTLS connection to an MX: the pure check of a presented
//! certificate chain against the MX host's usable TLSA records ([`verify_dane`]) and the rustls
//! configuration whose certificate verifier is that check ([`dane_starttls_config`]).
//!
//! The rules are documented on [`verify_dane`].

use std::fmt;
use std::sync::Arc;

use mta_sts_core::{Tlsa, USAGE_DANE_EE, USAGE_DANE_TA};
use ring::digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{
    CertificateDer, Der, ServerName, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};

use crate::{TlsSetupError, provider, server_name};

/// Which usable TLSA record authenticated a chain, and what it matched.
///
/// ```
/// use mta_sts_core::Tlsa;
/// use mta_sts_net::{DaneMatch, MatchedBy};
///
/// fn describe(m: &DaneMatch) -> String {
///     match m.matched_by() {
///         MatchedBy::EndEntity => format!("leaf matched by {}", m.record()),
///         MatchedBy::Chain(i) => format!("trust anchor: presented certificate {i}"),
///         MatchedBy::RecordData => "trust anchor: the record's own data".to_owned(),
///         _ => m.to_string(),
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneMatch {
    record: Tlsa,
    matched_by: MatchedBy,
}

/// What a matching TLSA record matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MatchedBy {
    /// DANE-EE(3): the leaf certificate or its public key.
    EndEntity,
    /// DANE-TA(2): the presented certificate at this position (1 = the first after the leaf),
    /// or its public key; the chain verified up to it.
    Chain(usize),
    /// DANE-TA(2) `2 0 0` or `2 1 0`: the trust anchor certificate or key carried whole by the
    /// record; the chain verified up to it.
    RecordData,
}

impl DaneMatch {
    /// The record that matched.
    pub fn record(&self) -> &Tlsa {
        &self.record
    }

    /// What it matched.
    pub fn matched_by(&self) -> MatchedBy {
        self.matched_by
    }

    /// Whether a DANE-TA(2) record authenticated the chain (else DANE-EE(3)).
    pub fn is_trust_anchor(&self) -> bool {
        self.record.usage() == USAGE_DANE_TA
    }
}

impl fmt::Display for DaneMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.record.selector() == 1 {
            "public key"
        } else {
            "certificate"
        };
        match self.matched_by {
            MatchedBy::EndEntity => write!(f, "DANE-EE {} matches the leaf {what}", self.record),
            MatchedBy::Chain(i) => write!(
                f,
                "DANE-TA {} matches the {what} of presented certificate {i}, the chain verifies to it",
                self.record
            ),
            MatchedBy::RecordData => write!(
                f,
                "DANE-TA {} carries the trust anchor {what}, the chain verifies to it",
                self.record
            ),
        }
    }
}

/// Why a chain is not valid under a trust anchor named by a DANE-TA(2) record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChainProblem {
    /// The leaf or an intermediate has expired.
    Expired,
    /// The leaf or an intermediate is not valid yet.
    NotValidYet,
    /// The chain does not lead from the leaf to the anchor (no issuer path, or a wrong
    /// signature).
    DoesNotLeadToAnchor,
    /// Any other reason given by the path validation (rustls-webpki's error, as text).
    Other(String),
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("a certificate of the chain has expired"),
            Self::NotValidYet => f.write_str("a certificate of the chain is not valid yet"),
            Self::DoesNotLeadToAnchor => {
                f.write_str("the chain does not lead from the leaf to the trust anchor")
            }
            Self::Other(e) => write!(f, "the chain is not valid: {e}"),
        }
    }
}

/// Why DANE did not authenticate an MX host's certificate chain. Display names the host and
/// the reason.
///
/// ```
/// use mta_sts_core::Tlsa;
/// use mta_sts_net::rustls::pki_types::{CertificateDer, UnixTime};
/// use mta_sts_net::{DaneVerifyError, verify_dane};
///
/// // PKIX-EE(1) is not used by SMTP: no usable record, whatever the certificate.
/// let records = [Tlsa::new(1, 1, 1, vec![0; 32])];
/// let leaf = CertificateDer::from(vec![0x30, 0x00]);
/// let error = verify_dane(&leaf, &[], &records, "mx.example.com", UnixTime::now()).unwrap_err();
/// assert!(matches!(error, DaneVerifyError::NoUsableRecord { .. }));
/// assert_eq!(error.to_string(), "DANE for mx.example.com: no usable TLSA record");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaneVerifyError {
    /// No record is usable by DANE for SMTP (RFC 7672 §3.1); a caller should not have used
    /// DANE for this host.
    NoUsableRecord {
        /// The MX host.
        host: String,
    },
    /// A presented certificate could not be parsed (position 0 is the leaf).
    BadCertificate {
        /// The MX host.
        host: String,
        /// Its position in the presented chain.
        position: usize,
        /// The parser's reason.
        reason: String,
    },
    /// No usable record matches the presented certificates.
    NoMatch {
        /// The MX host.
        host: String,
        /// How many usable records were tried.
        records: usize,
    },
    /// A DANE-TA(2) record named a trust anchor, but the chain is not valid under it.
    Chain {
        /// The MX host.
        host: String,
        /// The record.
        record: Tlsa,
        /// What is wrong with the chain.
        problem: ChainProblem,
    },
    /// A DANE-TA(2) record named a trust anchor and the chain verifies to it, but the leaf is
    /// not valid for the MX host name (RFC 7672 §3.2.2).
    NameMismatch {
        /// The MX host (the reference identifier).
        host: String,
        /// The record.
        record: Tlsa,
    },
    /// The host is not a DNS host name (an IP address or an invalid name).
    InvalidHost {
        /// The name given.
        host: String,
    },
}

impl fmt::Display for DaneVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoUsableRecord { host } => write!(f, "DANE for {host}: no usable TLSA record"),
            Self::BadCertificate {
                host,
                position,
                reason,
            } => write!(
                f,
                "DANE for {host}: presented certificate {position} cannot be parsed: {reason}"
            ),
            Self::NoMatch { host, records } => write!(
                f,
                "DANE for {host}: none of the {records} usable TLSA records matches the presented certificates"
            ),
            Self::Chain {
                host,
                record,
                problem,
            } => write!(f, "DANE for {host}: TLSA {record}: {problem}"),
            Self::NameMismatch { host, record } => write!(
                f,
                "DANE for {host}: TLSA {record}: the chain verifies to the trust anchor, but the certificate is not valid for {host}"
            ),
            Self::InvalidHost { host } => write!(f, "DANE for {host:?}: not a DNS host name"),
        }
    }
}

impl std::error::Error for DaneVerifyError {}

impl From<DaneVerifyError> for rustls::Error {
    /// The rustls certificate error for a failed DANE check: a name mismatch, an expired or
    /// not yet valid chain and an unparsable certificate map to rustls' own variants (so that
    /// [`certificate_problem`](crate::certificate_problem) classifies them); the others are
    /// [`CertificateError::Other`] carrying the [`DaneVerifyError`].
    fn from(error: DaneVerifyError) -> Self {
        let certificate = match &error {
            DaneVerifyError::NameMismatch { .. } => CertificateError::NotValidForName,
            DaneVerifyError::Chain {
                problem: ChainProblem::Expired,
                ..
            } => CertificateError::Expired,
            DaneVerifyError::Chain {
                problem: ChainProblem::NotValidYet,
                ..
            } => CertificateError::NotValidYet,
            DaneVerifyError::BadCertificate { .. } => CertificateError::BadEncoding,
            _ => CertificateError::Other(OtherError(Arc::new(error))),
        };
        Self::InvalidCertificate(certificate)
    }
}

/// Checks a presented certificate chain against an MX host's TLSA records as RFC 7672 §3 says:
/// `end_entity` and `intermediates` as the server sent them, `tlsa` the host's records
/// (unusable ones are ignored), `host` the MX host name (the reference identifier for
/// DANE-TA(2)), `now` the time for the validity periods DANE-TA(2) checks. Returns which record
/// matched, or why none authenticates the chain.
///
/// # What is checked
///
/// Only records that [`Tlsa::is_usable`] counts: DANE-TA(2) or DANE-EE(3), selector 0 or 1,
/// matching type 0, 1 or 2 with well-formed data (RFC 7672 §3.1). The chain is authenticated
/// when **any** usable record matches as described below (one matching usable record
/// suffices, RFC 7671 §5).
///
/// - **DANE-EE(3)** (RFC 7672 §3.1.1): the leaf certificate (selector 0: its whole DER;
///   selector 1: its SubjectPublicKeyInfo DER) equals the record's data (matching type 0) or its
///   SHA2-256 (1) or SHA2-512 (2) digest does. Nothing else: no name check ("the server MUST be
///   considered authenticated even if none of the names in the certificate match"), no validity
///   period ("the expiration date of the server certificate MUST be ignored"), no chain.
/// - **DANE-TA(2)** (RFC 7672 §3.1.2, RFC 7671 §5.2.2): the record names a trust anchor, which
///   is
///   - a certificate of the presented chain after the leaf whose DER (selector 0) or SPKI
///     (selector 1) matches the record, used as anchor with its subject, key and name
///     constraints; or
///   - the record itself when it carries the full trust anchor: `2 0 0` (the whole certificate)
///     or `2 1 0` (the whole public key; the anchor's name is taken from the issuer name of the
///     presented certificates, each tried). Servers are asked to send the TA certificate in
///     their chain (RFC 7672 §3.1.2, RFC 7671 §5.2.2); a record that carries the whole
///     certificate or key lets the client anchor without it, a digest record (`2 x 1`,
///     `2 x 2`) can only match a certificate the server sent.
///
///   The chain from the leaf (with the other presented certificates as intermediates) must
///   then verify up to that anchor with rustls-webpki: signatures, basic constraints, key
///   usage `serverAuth` when an EKU is present, name constraints, and the validity periods of
///   the leaf and the intermediates: RFC 7672 waives the expiry check for DANE-EE only
///   (§3.1.1), so DANE-TA keeps RFC 5280 path validation below the anchor. The anchor itself is
///   a name and a key (RFC 5280 §6.1.1), so the dates of its own certificate are not checked.
///   The leaf must be valid for the reference identifier, the MX host name `host` (RFC 7672
///   §3.2.2), by its DNS subjectAltNames with the usual left-most-label wildcard (RFC 6125
///   §6.4.3).
///
/// # Limits
///
/// - The reference identifier is the MX host name only. RFC 7672 §3.2.2 also accepts the TLSA
///   base domain when the TLSA RRset was found after CNAME expansion of the MX host name; the
///   core's DANE engine asks TLSA at `_25._tcp.<mx host>` and does not report an expanded name,
///   so there is none to add. A certificate naming only the expanded name is refused (safe).
/// - Names come from subjectAltName only: rustls-webpki ignores the subject CN, which RFC 7672
///   §3.2.2 allows as a fallback when there is no DNS SAN.
/// - The handshake signature is verified with rustls' own functions, which parse the leaf
///   strictly: a DANE-EE leaf with an unknown critical extension is refused there.
///
/// # Example
///
/// ```
/// use mta_sts_core::Tlsa;
/// use mta_sts_net::rustls::pki_types::{CertificateDer, UnixTime};
/// use mta_sts_net::{DaneVerifyError, MatchedBy, verify_dane};
///
/// # let key = rcgen::KeyPair::generate().unwrap();
/// # let cert = rcgen::CertificateParams::new(vec!["anything.invalid".to_owned()])
/// #     .unwrap().self_signed(&key).unwrap();
/// # let der_bytes = cert.der().to_vec();
/// let leaf = CertificateDer::from(der_bytes); // the server's certificate, any name
/// let full = Tlsa::new(3, 0, 0, leaf.to_vec()); // DANE-EE, whole certificate, exact
/// let m = verify_dane(&leaf, &[], &[full], "mx1.example.com", UnixTime::now())?;
/// assert_eq!(m.matched_by(), MatchedBy::EndEntity);
///
/// let wrong = Tlsa::new(3, 1, 1, vec![0; 32]);
/// let error = verify_dane(&leaf, &[], &[wrong], "mx1.example.com", UnixTime::now()).unwrap_err();
/// assert!(matches!(error, DaneVerifyError::NoMatch { records: 1, .. }));
/// # Ok::<(), DaneVerifyError>(())
/// ```
pub fn verify_dane(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    tlsa: &[Tlsa],
    host: &str,
    now: UnixTime,
) -> Result<DaneMatch, DaneVerifyError> {
    let algorithms = provider().signature_verification_algorithms;
    verify_with(end_entity, intermediates, tlsa, host, now, algorithms.all)
}

fn verify_with(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    tlsa: &[Tlsa],
    host: &str,
    now: UnixTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<DaneMatch, DaneVerifyError> {
    let usable: Vec<&Tlsa> = tlsa.iter().filter(|r| r.is_usable()).collect();
    if usable.is_empty() {
        return Err(DaneVerifyError::NoUsableRecord {
            host: host.to_owned(),
        });
    }
    let bad = |position: usize, e: webpki::Error| DaneVerifyError::BadCertificate {
        host: host.to_owned(),
        position,
        reason: format!("{e:?}"),
    };
    // The leaf must parse (leniently, as a bag of fields) for its public key; rustls will use
    // that key for the handshake signature anyway.
    let leaf_fields = webpki::anchor_from_trusted_cert(end_entity).map_err(|e| bad(0, e))?;
    let leaf = Presented::new(end_entity, &leaf_fields);

    // DANE-EE first: the cheapest check, and it needs nothing else.
    for record in usable.iter().filter(|r| r.usage() == USAGE_DANE_EE) {
        if leaf.matches(record) {
            return Ok(DaneMatch {
                record: (*record).clone(),
                matched_by: MatchedBy::EndEntity,
            });
        }
    }

    let ta_records: Vec<&Tlsa> = usable
        .iter()
        .copied()
        .filter(|r| r.usage() == USAGE_DANE_TA)
        .collect();
    let mut first_failure = None;
    if !ta_records.is_empty() {
        // The presented certificates after the leaf, parsed leniently; one that does not parse
        // cannot be an anchor and is left to the path validation as an intermediate.
        let parsed: Vec<(usize, TrustAnchor<'_>)> = intermediates
            .iter()
            .enumerate()
            .filter_map(|(i, der)| Some((i + 1, webpki::anchor_from_trusted_cert(der).ok()?)))
            .collect();
        let leaf_cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| bad(0, e))?;
        let reference = reference_name(host)?;
        for record in ta_records {
            let mut anchors: Vec<(MatchedBy, Vec<TrustAnchor<'_>>)> = Vec::new();
            for (position, fields) in &parsed {
                if Presented::new(&intermediates[position - 1], fields).matches(record) {
                    anchors.push((MatchedBy::Chain(*position), vec![fields.clone()]));
                }
            }
            if let Some(from_record) = record_anchors(record, &leaf_cert, intermediates) {
                anchors.push((MatchedBy::RecordData, from_record));
            }
            for (matched_by, anchor) in anchors {
                match check_chain(
                    &leaf_cert,
                    &anchor,
                    intermediates,
                    now,
                    algorithms,
                    &reference,
                ) {
                    Ok(()) => {
                        return Ok(DaneMatch {
                            record: record.clone(),
                            matched_by,
                        });
                    }
                    Err(failure) => {
                        let error = failure.into_error(host, record);
                        // A name mismatch tells more than a chain problem: keep the best.
                        let better = match &first_failure {
                            None => true,
                            Some(DaneVerifyError::NameMismatch { .. }) => false,
                            Some(_) => matches!(error, DaneVerifyError::NameMismatch { .. }),
                        };
                        if better {
                            first_failure = Some(error);
                        }
                    }
                }
            }
        }
    }
    Err(first_failure.unwrap_or(DaneVerifyError::NoMatch {
        host: host.to_owned(),
        records: usable.len(),
    }))
}

fn reference_name(host: &str) -> Result<ServerName<'static>, DaneVerifyError> {
    let invalid = || DaneVerifyError::InvalidHost {
        host: host.to_owned(),
    };
    match server_name(host).map_err(|_| invalid())? {
        name @ ServerName::DnsName(_) => Ok(name),
        _ => Err(invalid()),
    }
}

/// A presented certificate: its DER and its public key, for matching.
struct Presented<'a> {
    der: &'a [u8],
    spki: Vec<u8>,
}

impl<'a> Presented<'a> {
    fn new(der: &'a CertificateDer<'_>, fields: &TrustAnchor<'_>) -> Self {
        Self {
            der: der.as_ref(),
            // DER of the SubjectPublicKeyInfo: rustls-webpki keeps its contents and rewraps
            // them in their SEQUENCE; it accepts only minimal DER lengths, so this is the
            // certificate's own encoding byte for byte.
            spki: webpki::spki_for_anchor(fields).as_ref().to_vec(),
        }
    }

    fn matches(&self, record: &Tlsa) -> bool {
        let selected: &[u8] = match record.selector() {
            0 => self.der,
            1 => &self.spki,
            _ => return false,
        };
        association_matches(record, selected)
    }
}

/// Whether `selected` (a certificate or SPKI DER) matches the record's matching type and data
/// (RFC 6698 §2.1.3). Digests are compared in full; the data is public, so no constant-time
/// comparison is needed.
fn association_matches(record: &Tlsa, selected: &[u8]) -> bool {
    match record.matching_type() {
        0 => selected == record.data(),
        1 => digest::digest(&digest::SHA256, selected).as_ref() == record.data(),
        2 => digest::digest(&digest::SHA512, selected).as_ref() == record.data(),
        _ => false,
    }
}

/// The trust anchors a `2 0 0` or `2 1 0` record carries itself: the certificate, or the public
/// key under each issuer name found in the presented chain (the anchor's name is not in the
/// record; path building picks the one that issued a presented certificate).
fn record_anchors<'a>(
    record: &'a Tlsa,
    leaf: &webpki::EndEntityCert<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<Vec<TrustAnchor<'a>>> {
    if record.matching_type() != 0 {
        return None;
    }
    match record.selector() {
        0 => {
            let der = CertificateDer::from(record.data());
            let anchor = webpki::anchor_from_trusted_cert(&der).ok()?.to_owned();
            Some(vec![anchor])
        }
        1 => {
            let spki = der_sequence_contents(record.data())?;
            let mut issuers: Vec<Vec<u8>> = vec![leaf.issuer().to_vec()];
            for der in intermediates {
                if let Ok(cert) = webpki::EndEntityCert::try_from(der) {
                    let issuer = cert.issuer().to_vec();
                    if !issuers.contains(&issuer) {
                        issuers.push(issuer);
                    }
                }
            }
            Some(
                issuers
                    .into_iter()
                    .map(|subject| TrustAnchor {
                        subject: Der::from(subject),
                        subject_public_key_info: Der::from_slice(spki),
                        name_constraints: None,
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The contents of a DER SEQUENCE that spans all of `der` (tag 0x30, definite length).
fn der_sequence_contents(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() == len).then_some(rest)
}

enum ChainFailure {
    Chain(ChainProblem),
    Name,
}

impl ChainFailure {
    fn into_error(self, host: &str, record: &Tlsa) -> DaneVerifyError {
        match self {
            Self::Chain(problem) => DaneVerifyError::Chain {
                host: host.to_owned(),
                record: record.clone(),
                problem,
            },
            Self::Name => DaneVerifyError::NameMismatch {
                host: host.to_owned(),
                record: record.clone(),
            },
        }
    }
}

fn check_chain(
    leaf: &webpki::EndEntityCert<'_>,
    anchors: &[TrustAnchor<'_>],
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    reference: &ServerName<'_>,
) -> Result<(), ChainFailure> {
    leaf.verify_for_usage(
        algorithms,
        anchors,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| {
        ChainFailure::Chain(match e {
            webpki::Error::CertExpired { .. } | webpki::Error::InvalidCertValidity => {
                ChainProblem::Expired
            }
            webpki::Error::CertNotValidYet { .. } => ChainProblem::NotValidYet,
            webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                ChainProblem::DoesNotLeadToAnchor
            }
            other => ChainProblem::Other(format!("{other:?}")),
        })
    })?;
    leaf.verify_is_valid_for_subject_name(reference)
        .map_err(|_| ChainFailure::Name)
}

/// The rustls certificate verifier for an MX host under DANE: [`verify_dane`] for the chain,
/// rustls' own checks for the handshake signatures.
#[derive(Debug)]
struct DaneVerifier {
    tlsa: Vec<Tlsa>,
    host: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match verify_with(
            end_entity,
            intermediates,
            &self.tlsa,
            &self.host,
            now,
            self.algorithms.all,
        ) {
            Ok(found) => {
                tracing::debug!(host = %self.host, "{found}");
                Ok(ServerCertVerified::assertion())
            }
            Err(error) => {
                tracing::debug!(host = %self.host, "{error}");
                Err(error.into())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The client configuration for the STARTTLS connection to an MX host whose TLSA records are
/// `tlsa` (authenticated, at `_25._tcp.<host>`): the chain is accepted when [`verify_dane`]
/// accepts it for `host`, the handshake signatures are checked as rustls always does, with the
/// workspace's provider ([`provider`]) and TLS 1.2 or 1.3 as [`mx_starttls_config`]. No WebPKI
/// root is consulted: DANE replaces it (RFC 7672 §3).
///
/// Connect with [`server_name`]`(host)` as the SNI name (RFC 7672 §8.1 asks for SNI with the
/// TLSA base domain); the name checked for DANE-TA(2) is `host` as given here. With no usable
/// record, the configuration is built but refuses every chain
/// ([`DaneVerifyError::NoUsableRecord`]); check [`Tlsa::is_usable`] first if you want to
/// fall back to something else. A refused chain fails the handshake with
/// [`rustls::Error::InvalidCertificate`] (see the `From<DaneVerifyError>` conversion).
///
/// ```
/// use mta_sts_core::Tlsa;
/// use mta_sts_net::{dane_starttls_config, server_name};
///
/// let records = [Tlsa::new(3, 1, 1, vec![0x5c; 32])];
/// let config = dane_starttls_config(&records, "mx1.example.com")?;
/// let name = server_name("mx1.example.com")?;
/// // … after EHLO / STARTTLS / 220, hand `config` and `name` to your TLS connector.
/// # let _ = (config, name);
/// assert!(dane_starttls_config(&records, "192.0.2.1").is_err());
/// # Ok::<(), mta_sts_net::TlsSetupError>(())
/// ```
///
/// [`mx_starttls_config`]: crate::mx_starttls_config
pub fn dane_starttls_config(tlsa: &[Tlsa], host: &str) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let name = server_name(host)?;
    let provider: Arc<CryptoProvider> = provider();
    let verifier = DaneVerifier {
        tlsa: tlsa.to_vec(),
        host: name.to_str().into_owned(),
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::DnsName;

    #[test]
    fn der_sequence_contents_short_and_long_lengths() {
        assert_eq!(der_sequence_contents(&[0x30, 0x00]), Some(&[][..]));
        assert_eq!(
            der_sequence_contents(&[0x30, 0x01, 0x05]),
            Some(&[0x05][..])
        );
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(der_sequence_contents(&long).map(<[u8]>::len), Some(0x80));
        assert_eq!(der_sequence_contents(&[0x31, 0x00]), None);
        assert_eq!(der_sequence_contents(&[0x30, 0x02, 0x00]), None);
        assert_eq!(der_sequence_contents(&[0x30, 0x80]), None);
        assert_eq!(der_sequence_contents(&[]), None);
    }

    #[test]
    fn dns_name_is_lowercased_for_the_reference() {
        let name = reference_name("MX1.Example.COM.").unwrap();
        assert_eq!(
            name,
            ServerName::DnsName(DnsName::try_from("mx1.example.com").unwrap())
        );
        assert!(reference_name("192.0.2.1").is_err());
    }
}
