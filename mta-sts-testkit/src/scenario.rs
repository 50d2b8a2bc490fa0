//! Scenario data: what the world answers for a domain, and which faults it injects.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The `mode` of a generated policy (RFC 8461 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `mode: enforce`
    Enforce,
    /// `mode: testing`
    Testing,
    /// `mode: none`
    None,
}

impl Mode {
    /// The value as written in a policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
        }
    }
}

/// One TXT resource record: a list of character-strings of at most 255 bytes each.
///
/// A record with several strings models `"v=STSv1; " "id=1;"`, which clients must join without
/// spaces (RFC 8461 §3.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Txt(Vec<Vec<u8>>);

impl Txt {
    /// A record holding `text`, split into strings of 255 bytes if it is longer.
    pub fn new(text: impl AsRef<[u8]>) -> Self {
        Self::strings([text])
    }

    /// A record made of the given strings, in order. A string longer than 255 bytes is split
    /// into several strings of at most 255 bytes (the wire format allows no longer ones).
    pub fn strings<I, S>(strings: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut out = Vec::new();
        for s in strings {
            let s = s.as_ref();
            if s.is_empty() {
                out.push(Vec::new());
            }
            out.extend(s.chunks(255).map(<[u8]>::to_vec));
        }
        Self(out)
    }

    /// The usual MTA-STS record `v=STSv1; id=<id>;`.
    pub fn sts(id: &str) -> Self {
        Self::new(format!("v=STSv1; id={id};"))
    }

    /// The character-strings of this record.
    pub fn parts(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The strings joined without separator, as RFC 8461 §3.1 requires, lossily decoded.
    pub fn joined(&self) -> String {
        String::from_utf8_lossy(&self.0.concat()).into_owned()
    }
}

impl From<&str> for Txt {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Txt {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// A DNS record type, as counted by [`World::queries`](crate::World::queries) and returned by
/// the probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Text.
    Txt,
    /// Canonical name.
    Cname,
    /// Start of authority.
    Soa,
    /// Name server.
    Ns,
    /// TLS association for DANE (RFC 6698, type 52).
    Tlsa,
    /// Any other type, by number (`ANY` is 255).
    Other(u16),
}

impl RecordType {
    /// The type's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Ns => 2,
            Self::Cname => 5,
            Self::Soa => 6,
            Self::Mx => 15,
            Self::Txt => 16,
            Self::Aaaa => 28,
            Self::Tlsa => 52,
            Self::Other(n) => n,
        }
    }

    /// The type for a number on the wire.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::A,
            2 => Self::Ns,
            5 => Self::Cname,
            6 => Self::Soa,
            15 => Self::Mx,
            16 => Self::Txt,
            28 => Self::Aaaa,
            52 => Self::Tlsa,
            n => Self::Other(n),
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::A => f.write_str("A"),
            Self::Aaaa => f.write_str("AAAA"),
            Self::Mx => f.write_str("MX"),
            Self::Txt => f.write_str("TXT"),
            Self::Cname => f.write_str("CNAME"),
            Self::Soa => f.write_str("SOA"),
            Self::Ns => f.write_str("NS"),
            Self::Tlsa => f.write_str("TLSA"),
            Self::Other(n) => write!(f, "TYPE{n}"),
        }
    }
}

/// The data of one resource record the world serves (and the probes decode).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A TXT record.
    Txt(Txt),
    /// An alias to another name.
    Cname(String),
    /// A mail exchanger: preference and host.
    Mx(u16, String),
    /// A start of authority: primary server, mailbox, serial and minimum (negative) TTL.
    Soa {
        /// Primary name server.
        mname: String,
        /// Responsible mailbox, as a name.
        rname: String,
        /// Serial number.
        serial: u32,
        /// Minimum TTL, used as the negative-caching TTL.
        minimum: u32,
    },
    /// A TLSA record (RFC 6698 §2.1), as DANE publishes it at `_25._tcp.<mx host>` (RFC 7672
    /// §2.2). Served verbatim: any usage, selector, matching type and data length (also
    /// malformed ones, for tests of a client's checks).
    Tlsa {
        /// Certificate usage: 2 is DANE-TA, 3 is DANE-EE (RFC 7218).
        usage: u8,
        /// Selector: 0 is the full certificate, 1 its SubjectPublicKeyInfo.
        selector: u8,
        /// Matching type: 0 is the exact data, 1 SHA-256, 2 SHA-512.
        matching_type: u8,
        /// The certificate association data.
        data: Vec<u8>,
    },
    /// Any record type the probes do not decode (never served by the world).
    Other(RecordType),
}

impl Record {
    /// The type of this record.
    pub fn record_type(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::Aaaa,
            Self::Txt(_) => RecordType::Txt,
            Self::Cname(_) => RecordType::Cname,
            Self::Mx(..) => RecordType::Mx,
            Self::Soa { .. } => RecordType::Soa,
            Self::Tlsa { .. } => RecordType::Tlsa,
            Self::Other(t) => *t,
        }
    }
}

/// A fault the DNS server injects for a name (optionally only for one record type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsFault {
    /// Answer NXDOMAIN (with the SOA in the authority section), whatever records exist.
    NxDomain,
    /// Answer SERVFAIL.
    ServFail,
    /// Answer REFUSED.
    Refused,
    /// Send no answer at all, over UDP or TCP: the client has to time out.
    NoAnswer,
    /// Over UDP, answer with the TC bit set and empty sections, so the client retries over
    /// TCP; the TCP answer is complete.
    TruncateUdp,
    /// Answer as a validating resolver does when DNSSEC validation fails (the answer is
    /// "bogus", RFC 4035 §5.5): SERVFAIL with empty sections and, when the query has EDNS, the
    /// Extended DNS Error 6 "DNSSEC Bogus" (RFC 8914 §4.7).
    Bogus,
}

/// How the HTTPS server answers `GET /.well-known/mta-sts.txt` for a policy host.
///
/// Every response carries `Connection: close` and the server closes the connection after it.
/// Any other path gets a `404`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Http {
    /// `200 OK`, `Content-Type: text/plain`, `Content-Length`, the policy body.
    Policy,
    /// The given status with a short `text/plain` body (none for 1xx, 204 and 304).
    Status(u16),
    /// A redirect (`301`, `302`, `307`, ...) with a `Location` header and an empty body.
    Redirect {
        /// The status code.
        status: u16,
        /// The `Location` header's value.
        location: String,
    },
    /// `200 OK` with the policy body and this `Content-Type` (e.g. `text/html`, or
    /// `text/plain; charset=utf-8`).
    ContentType(String),
    /// `200 OK` with the policy body and no `Content-Type` header.
    NoContentType,
    /// `200 OK` with the policy sent in `Transfer-Encoding: chunked`, several small chunks.
    Chunked,
    /// `200 OK`, `text/plain`, a body of `size` bytes: the policy followed by padding lines
    /// `pad: xxx…` (so it stays a valid policy if a client accepts it). Sent with
    /// `Content-Length`, or chunked when `chunked` is true.
    Oversize {
        /// The body's total size in bytes.
        size: usize,
        /// Use chunked transfer encoding instead of `Content-Length`.
        chunked: bool,
    },
    /// `200 OK` announcing `Content-Length: announced` (raised to the body's length + 1 if
    /// smaller), then only the policy body, then the connection is closed.
    ShortBody {
        /// The announced length.
        announced: usize,
    },
    /// `200 OK` headers with the policy's `Content-Length`, then nothing until
    /// [`World::release_stalls`](crate::World::release_stalls) (then the body follows), the
    /// client closes, the stall limit passes, or the world shuts down.
    StallAfterHeaders,
    /// The TLS handshake stops after the ClientHello (no ServerHello) until released, the
    /// client closes, the stall limit passes, or the world shuts down; then the connection
    /// is closed.
    StallHandshake,
    /// The TCP connection is closed right after the ClientHello, without an alert.
    Reset,
    /// These bytes are written verbatim after the handshake (status line, headers and body),
    /// then the connection is closed.
    Raw(Vec<u8>),
}

/// Which certificate the HTTPS server presents for a policy host (chosen by SNI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cert {
    /// Issued by the world's CA for `mta-sts.<domain>`: valid.
    Valid,
    /// Issued by the world's CA for `*.<domain>`: valid for `mta-sts.<domain>`.
    Wildcard,
    /// Issued by the world's CA for `m*.<domain>`: a partial wildcard, not valid.
    PartialWildcard,
    /// Issued by the world's CA with the host only in the subject CN and no SAN: not valid.
    CommonNameOnly,
    /// Issued by a second CA that clients do not trust
    /// ([`World::untrusted_ca_pem`](crate::World::untrusted_ca_pem)).
    UntrustedCa,
    /// Self-signed, for the right name.
    SelfSigned,
    /// Issued by the world's CA for `mta-sts.wrong-name.invalid`.
    WrongName,
    /// Issued by the world's CA for the right name, valid only in the year 2000.
    Expired,
    /// Issued by the world's CA for the right name, valid only from 2090 on.
    NotYetValid,
}

/// The TLS versions the HTTPS server offers for a policy host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TlsVersions {
    /// TLS 1.2 and TLS 1.3.
    #[default]
    Any,
    /// Only TLS 1.2.
    Tls12Only,
    /// Only TLS 1.3.
    Tls13Only,
}

/// What `_mta-sts.<domain>` holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TxtSetting {
    Records(Vec<Txt>),
    Cname(String),
}

/// One policy domain of the world: its DNS data, its policy and how its policy host behaves.
///
/// The world derives these names from a domain `d`:
/// - `_mta-sts.d`: the TXT records (or a CNAME), see [`txt_id`](Self::txt_id),
///   [`txts`](Self::txts), [`txt_cname`](Self::txt_cname);
/// - `mta-sts.d`: A `127.0.0.1` and no AAAA, unless [`host_addrs`](Self::host_addrs) says
///   otherwise;
/// - `d`: the MX records (by default the policy's non-wildcard `mx` hosts with preferences
///   10, 20, …) and the zone's SOA;
/// - each MX host below `d`: A `127.0.0.1`.
///
/// ```
/// use mta_sts_testkit::{Cert, Domain, Http};
/// let d = Domain::enforce(["mx1.example.com", "*.backup.example.com"])
///     .txt_id("20240101")
///     .max_age(604800)
///     .http(Http::Chunked)
///     .cert(Cert::Wildcard);
/// assert!(d.policy_text().contains("mx: *.backup.example.com\r\n"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Domain {
    pub(crate) txt: TxtSetting,
    pub(crate) txt_fault: Option<DnsFault>,
    mode: Mode,
    policy_mx: Vec<String>,
    max_age: u64,
    raw_policy: Option<String>,
    pub(crate) mx_records: Option<Vec<(u16, String)>>,
    pub(crate) http: Http,
    pub(crate) cert: Cert,
    pub(crate) tls: TlsVersions,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) host_addrs: Vec<IpAddr>,
}

impl Domain {
    /// A domain with a policy of this mode and these `mx` patterns, TXT id `1`, `max_age`
    /// 86400, served correctly with a valid certificate.
    pub fn new<I, S>(mode: Mode, mx: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            txt: TxtSetting::Records(vec![Txt::sts("1")]),
            txt_fault: None,
            mode,
            policy_mx: mx.into_iter().map(Into::into).collect(),
            max_age: 86400,
            raw_policy: None,
            mx_records: None,
            http: Http::Policy,
            cert: Cert::Valid,
            tls: TlsVersions::Any,
            headers: Vec::new(),
            host_addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }
    }

    /// `mode: enforce` with these `mx` patterns.
    pub fn enforce<I, S>(mx: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Mode::Enforce, mx)
    }

    /// `mode: testing` with these `mx` patterns.
    pub fn testing<I, S>(mx: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Mode::Testing, mx)
    }

    /// `mode: none` without `mx` lines.
    pub fn none() -> Self {
        Self::new(Mode::None, Vec::<String>::new())
    }

    /// A domain that has not implemented MTA-STS: no TXT record at `_mta-sts.<domain>`
    /// (NXDOMAIN) and a `404` from its policy host. MX records can still be set with
    /// [`mx_records`](Self::mx_records).
    pub fn without_sts() -> Self {
        Self::none().no_txt().http(Http::Status(404))
    }

    /// The TXT record becomes the single record `v=STSv1; id=<id>;`.
    pub fn txt_id(mut self, id: &str) -> Self {
        self.txt = TxtSetting::Records(vec![Txt::sts(id)]);
        self
    }

    /// The TXT records become this single record.
    pub fn txt(self, record: impl Into<Txt>) -> Self {
        self.txts([record.into()])
    }

    /// The TXT records become these records (none, one or several).
    pub fn txts<I>(mut self, records: I) -> Self
    where
        I: IntoIterator<Item = Txt>,
    {
        self.txt = TxtSetting::Records(records.into_iter().collect());
        self
    }

    /// No record at `_mta-sts.<domain>` (NXDOMAIN).
    pub fn no_txt(self) -> Self {
        self.txts([])
    }

    /// `_mta-sts.<domain>` becomes a CNAME to `target` (RFC 8461 §3.1, §8.2); the target's
    /// records come from the world (e.g. another domain's `_mta-sts` name, or
    /// [`WorldBuilder::record`](crate::WorldBuilder::record)).
    pub fn txt_cname(mut self, target: impl Into<String>) -> Self {
        self.txt = TxtSetting::Cname(crate::state::normalize(&target.into()));
        self
    }

    /// Queries for `_mta-sts.<domain>` (of any type) get this fault; `None` removes it.
    pub fn txt_fault(mut self, fault: impl Into<Option<DnsFault>>) -> Self {
        self.txt_fault = fault.into();
        self
    }

    /// The generated policy's mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The generated policy's `mx` patterns (replacing the previous ones).
    pub fn policy_mx<I, S>(mut self, mx: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.policy_mx = mx.into_iter().map(Into::into).collect();
        self
    }

    /// The generated policy's `max_age` in seconds.
    pub fn max_age(mut self, seconds: u64) -> Self {
        self.max_age = seconds;
        self
    }

    /// Serve this body verbatim instead of the generated policy (for invalid or unusual
    /// policies: LF line ends, duplicate fields, garbage, …).
    pub fn policy_body(mut self, body: impl Into<String>) -> Self {
        self.raw_policy = Some(body.into());
        self
    }

    /// Go back to the generated policy after [`policy_body`](Self::policy_body).
    pub fn generated_policy(mut self) -> Self {
        self.raw_policy = None;
        self
    }

    /// The MX records of the domain (preference, host), replacing the default ones derived from
    /// the policy's `mx` patterns. An empty list means no MX record (NODATA).
    pub fn mx_records<I, S>(mut self, records: I) -> Self
    where
        I: IntoIterator<Item = (u16, S)>,
        S: Into<String>,
    {
        self.mx_records = Some(
            records
                .into_iter()
                .map(|(p, h)| (p, crate::state::normalize(&h.into())))
                .collect(),
        );
        self
    }

    /// How the policy host answers (default [`Http::Policy`]).
    pub fn http(mut self, http: Http) -> Self {
        self.http = http;
        self
    }

    /// The certificate the policy host presents (default [`Cert::Valid`]).
    pub fn cert(mut self, cert: Cert) -> Self {
        self.cert = cert;
        self
    }

    /// The TLS versions the policy host offers (default [`TlsVersions::Any`]).
    pub fn tls(mut self, tls: TlsVersions) -> Self {
        self.tls = tls;
        self
    }

    /// An extra header on every response of the policy host (e.g. `Cache-Control`, `ETag`,
    /// which RFC 8461 §3.3 says clients must ignore).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The addresses `mta-sts.<domain>` resolves to (A and AAAA records), in order; default
    /// `127.0.0.1` only. The world listens on `127.0.0.1` only, so any other address (e.g.
    /// `::1` first) is one a client fails to connect to, which tests a client's fallback
    /// across a host's addresses.
    pub fn host_addrs<I: IntoIterator<Item = IpAddr>>(mut self, addrs: I) -> Self {
        self.host_addrs = addrs.into_iter().collect();
        self
    }

    /// The policy body the host serves (generated with CRLF line ends, or the verbatim body).
    pub fn policy_text(&self) -> String {
        if let Some(raw) = &self.raw_policy {
            return raw.clone();
        }
        let mut s = format!("version: STSv1\r\nmode: {}\r\n", self.mode.as_str());
        for mx in &self.policy_mx {
            s.push_str("mx: ");
            s.push_str(mx);
            s.push_str("\r\n");
        }
        s.push_str(&format!("max_age: {}\r\n", self.max_age));
        s
    }

    /// The MX records served for the domain.
    pub fn mx_list(&self) -> Vec<(u16, String)> {
        if let Some(list) = &self.mx_records {
            return list.clone();
        }
        self.policy_mx
            .iter()
            .filter(|m| !m.starts_with('*'))
            .enumerate()
            .map(|(i, m)| {
                let pref = u16::try_from((i + 1) * 10).unwrap_or(u16::MAX);
                (pref, crate::state::normalize(m))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Domain, Mode, Txt};

    #[test]
    fn txt_strings_are_split_at_255_bytes_and_empty_strings_kept() {
        let t = Txt::strings(["a".repeat(600), String::new(), "b".into()]);
        let lens: Vec<usize> = t.parts().iter().map(Vec::len).collect();
        assert_eq!(lens, [255, 255, 90, 0, 1]);
        assert_eq!(t.joined().len(), 601);
        assert_eq!(Txt::sts("x1").joined(), "v=STSv1; id=x1;");
    }

    #[test]
    fn generated_policy_and_default_mx_records() {
        let d = Domain::new(
            Mode::Testing,
            ["MX1.Example.com.", "*.b.example.com", "mx3.example.com"],
        );
        assert_eq!(
            d.policy_text(),
            "version: STSv1\r\nmode: testing\r\nmx: MX1.Example.com.\r\nmx: *.b.example.com\r\nmx: mx3.example.com\r\nmax_age: 86400\r\n"
        );
        assert_eq!(
            d.mx_list(),
            [
                (10, "mx1.example.com".to_owned()),
                (20, "mx3.example.com".to_owned())
            ]
        );
        assert_eq!(
            Domain::none().policy_text(),
            "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
        );
    }
}
