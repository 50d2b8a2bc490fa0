//! DNS messages: build a query for TXT, A, AAAA, MX or TLSA and parse the response to it.
//!
//! The wire format is hickory-proto's; none of its types appear in this API. A response is
//! checked against the query that asked for it (id, QR bit, opcode, question), CNAME chains in
//! the answer section are followed (at most [`MAX_CNAME_CHAIN`] links, loops detected), and the
//! response code is sorted into an answer (NOERROR, NXDOMAIN) or a failure (SERVFAIL, REFUSED, …).
//! A response with the TC bit set is [`ResponseError::Truncated`]: ask again over TCP, with the
//! 2-byte length framing of [`DnsQuery::tcp_bytes`] and [`TcpFramer`].
//!
//! For DANE, [`DnsQuery::dnssec`] asks with the DNSSEC OK bit and the AD bit and
//! [`DnsQuery::parse_dnssec`] reports the response's AD bit and TTL with the records
//! ([`DnssecAnswer`]). The codec does not validate DNSSEC itself: it trusts the AD bit of the
//! resolver it asks, which must be a validating resolver on a trusted path (normally on the same
//! host), as Postfix does with `smtp_dns_support_level = dnssec`.
//!
//! ```
//! use mta_sts_core::io::{TxtAnswer, TxtQuery};
//! use mta_sts_core::wire::dns::DnsQuery;
//!
//! let query = DnsQuery::txt(&TxtQuery::new("_mta-sts.example.com"), 0x1234)?;
//! let bytes: &[u8] = query.bytes(); // send this in one UDP datagram
//! assert_eq!(&bytes[..2], &[0x12, 0x34]);
//! // A response that is not about this query is never taken as the answer:
//! assert!(query.parse(b"garbage").is_err());
//! # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
//! ```

use core::fmt;
use core::time::Duration;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::io::{
    DnsFailure, DnssecAnswer, DnssecData, DnssecQuery, DnssecType, TxtAnswer, TxtQuery,
};
use crate::{MAX_TLSA_RECORDS, Tlsa};

/// The largest DNS message: 65535 bytes (the 2-byte TCP length prefix, and the UDP payload limit).
/// A UDP receive buffer of this size never cuts a datagram short.
///
/// ```
/// let mut buf = vec![0u8; mta_sts_core::wire::dns::MAX_MESSAGE_SIZE];
/// assert_eq!(buf.len(), 65535);
/// # buf.clear();
/// ```
pub const MAX_MESSAGE_SIZE: usize = u16::MAX as usize;

/// The largest response accepted over UDP: 4096 bytes. The query advertises
/// [`EDNS_UDP_PAYLOAD`] (1232), so a server that follows RFC 6891 never sends more; one that sends
/// more than this is asked again over TCP, as if it had set the TC bit
/// ([`Exchange::received`](crate::wire::exchange::Exchange::received)).
///
/// Receive UDP into a buffer of `MAX_UDP_RESPONSE + 1` bytes: a datagram that fills it is longer
/// than this (the kernel cuts it to the buffer), and the exchange then goes to TCP. A
/// [`MAX_MESSAGE_SIZE`] buffer would do too, but costs 64 KiB per exchange under way.
///
/// ```
/// let buf = vec![0u8; mta_sts_core::wire::dns::MAX_UDP_RESPONSE + 1];
/// assert_eq!(buf.len(), 4097);
/// ```
pub const MAX_UDP_RESPONSE: usize = 4096;

/// The UDP payload size advertised in the query's EDNS(0) OPT record: 1232 bytes, the DNS Flag
/// Day 2020 value, which avoids IP fragmentation. Larger answers come back truncated (TC) and are
/// asked again over TCP.
///
/// ```
/// assert_eq!(mta_sts_core::wire::dns::EDNS_UDP_PAYLOAD, 1232);
/// ```
pub const EDNS_UDP_PAYLOAD: u16 = 1232;

/// How many CNAME records a chain in the answer section may have before the response is
/// rejected as [`ResponseError::CnameChainTooLong`] (hickory-resolver follows 8 too).
///
/// ```
/// assert_eq!(mta_sts_core::wire::dns::MAX_CNAME_CHAIN, 8);
/// ```
pub const MAX_CNAME_CHAIN: usize = 8;

/// The record type a [`DnsQuery`] asks for.
///
/// ```
/// use mta_sts_core::wire::dns::QueryType;
/// assert_eq!(QueryType::Txt.to_string(), "TXT");
/// assert_eq!(QueryType::Aaaa.to_string(), "AAAA");
/// assert_eq!(QueryType::Mx.to_string(), "MX");
/// assert_eq!(QueryType::Tlsa.to_string(), "TLSA");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueryType {
    /// TXT records (the `_mta-sts` record).
    Txt,
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Mail exchangers (preference and host), e.g. to check a policy against a domain's MX
    /// records.
    Mx,
    /// TLSA records (RFC 6698), at `_25._tcp.<mx host>` for DANE for SMTP (RFC 7672). Its
    /// answer is always a [`DnsAnswer::Dnssec`].
    Tlsa,
}

impl QueryType {
    fn record_type(self) -> RecordType {
        match self {
            Self::Txt => RecordType::TXT,
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Mx => RecordType::MX,
            Self::Tlsa => RecordType::TLSA,
        }
    }

    /// The query type of a [`DnssecType`].
    fn of_dnssec(rtype: DnssecType) -> Self {
        match rtype {
            DnssecType::Mx => Self::Mx,
            DnssecType::A => Self::A,
            DnssecType::Aaaa => Self::Aaaa,
            DnssecType::Tlsa => Self::Tlsa,
        }
    }

    /// The [`DnssecType`] of this query type; TXT has none.
    fn dnssec_type(self) -> Option<DnssecType> {
        match self {
            Self::Txt => None,
            Self::A => Some(DnssecType::A),
            Self::Aaaa => Some(DnssecType::Aaaa),
            Self::Mx => Some(DnssecType::Mx),
            Self::Tlsa => Some(DnssecType::Tlsa),
        }
    }
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Txt => "TXT",
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Mx => "MX",
            Self::Tlsa => "TLSA",
        })
    }
}

/// A name that cannot be put in a DNS query.
///
/// ```
/// use mta_sts_core::wire::dns::{DnsQuery, QueryType};
/// let err = DnsQuery::new("bad name", QueryType::A, 1).unwrap_err();
/// assert_eq!(err.name(), "bad name");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    name: String,
    reason: String,
}

impl QueryError {
    /// The name that was refused.
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// let err = DnsQuery::new("", QueryType::Txt, 1).unwrap_err();
    /// assert_eq!(err.name(), "");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot query DNS name {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for QueryError {}

/// The addresses of a name: the answer to an A or AAAA [`DnsQuery`].
///
/// ```
/// use mta_sts_core::wire::dns::AddrAnswer;
/// assert!(AddrAnswer::NxDomain.addrs().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrAnswer {
    /// The addresses found (after following CNAMEs), in the order of the answer section.
    Addrs(Vec<IpAddr>),
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no address of the type asked (NOERROR with an empty answer).
    NoData,
}

impl AddrAnswer {
    /// The addresses found; empty for NXDOMAIN and no-data.
    ///
    /// ```
    /// use mta_sts_core::wire::dns::AddrAnswer;
    /// let a = AddrAnswer::Addrs(vec!["192.0.2.1".parse().unwrap()]);
    /// assert_eq!(a.addrs().len(), 1);
    /// ```
    pub fn addrs(&self) -> &[IpAddr] {
        match self {
            Self::Addrs(a) => a,
            Self::NxDomain | Self::NoData => &[],
        }
    }
}

/// The mail exchangers of a name: the answer to an MX [`DnsQuery`].
///
/// ```
/// use mta_sts_core::wire::dns::MxAnswer;
/// let a = MxAnswer::Records(vec![(10, "mx1.example.com".into())]);
/// assert_eq!(a.records(), &[(10, "mx1.example.com".to_owned())]);
/// assert!(MxAnswer::NoData.records().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MxAnswer {
    /// The MX records found (after following CNAMEs) as (preference, host) pairs, sorted by
    /// preference, lowest (most preferred) first; records of equal preference keep the order of
    /// the answer section. Hosts are in A-labels as received, without the root dot; the null MX
    /// of RFC 7505 (`0 .`, "this domain accepts no mail") has the host `"."`.
    Records(Vec<(u16, String)>),
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no MX record (NOERROR with an empty answer): RFC 5321 §5.1 then
    /// takes the domain itself as its only mail exchanger.
    NoData,
}

impl MxAnswer {
    /// The (preference, host) pairs; empty for NXDOMAIN and no-data.
    ///
    /// ```
    /// use mta_sts_core::wire::dns::MxAnswer;
    /// assert!(MxAnswer::NxDomain.records().is_empty());
    /// ```
    pub fn records(&self) -> &[(u16, String)] {
        match self {
            Self::Records(r) => r,
            Self::NxDomain | Self::NoData => &[],
        }
    }
}

/// The answer to a [`DnsQuery`]: TXT records, addresses or mail exchangers, depending on its
/// [`QueryType`]; or, for a query made with [`DnsQuery::dnssec`] (and any TLSA query), a
/// [`DnssecAnswer`] with the AD bit and the TTL.
///
/// ```
/// use mta_sts_core::io::TxtAnswer;
/// use mta_sts_core::wire::dns::DnsAnswer;
/// let answer = DnsAnswer::Txt(TxtAnswer::NODATA);
/// assert_eq!(answer.into_txt(), Ok(TxtAnswer::NODATA));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsAnswer {
    /// The answer to a TXT query.
    Txt(TxtAnswer),
    /// The answer to an A or AAAA query.
    Addrs(AddrAnswer),
    /// The answer to an MX query.
    Mx(MxAnswer),
    /// The answer to a DNSSEC query ([`DnsQuery::dnssec`]) or a TLSA query.
    Dnssec(DnssecAnswer),
}

impl DnsAnswer {
    /// The TXT answer, as [`crate::io::TxtResult`]. An address answer (which a TXT query never
    /// yields) reads as [`DnsFailure::Malformed`].
    ///
    /// ```
    /// use mta_sts_core::wire::dns::{AddrAnswer, DnsAnswer};
    /// assert!(DnsAnswer::Addrs(AddrAnswer::NoData).into_txt().is_err());
    /// ```
    pub fn into_txt(self) -> crate::io::TxtResult {
        match self {
            Self::Txt(t) => Ok(t),
            Self::Addrs(_) | Self::Mx(_) | Self::Dnssec(_) => {
                Err(DnsFailure::Malformed("expected a TXT answer".into()))
            }
        }
    }

    /// The address answer. A TXT answer (which an A or AAAA query never yields) reads as
    /// [`DnsFailure::Malformed`].
    ///
    /// ```
    /// use mta_sts_core::wire::dns::{AddrAnswer, DnsAnswer};
    /// let a = DnsAnswer::Addrs(AddrAnswer::NxDomain).into_addrs();
    /// assert_eq!(a, Ok(AddrAnswer::NxDomain));
    /// ```
    pub fn into_addrs(self) -> Result<AddrAnswer, DnsFailure> {
        match self {
            Self::Addrs(a) => Ok(a),
            Self::Txt(_) | Self::Mx(_) | Self::Dnssec(_) => {
                Err(DnsFailure::Malformed("expected an address answer".into()))
            }
        }
    }

    /// The MX answer. Any other answer (which an MX query never yields) reads as
    /// [`DnsFailure::Malformed`].
    ///
    /// ```
    /// use mta_sts_core::wire::dns::{DnsAnswer, MxAnswer};
    /// assert_eq!(DnsAnswer::Mx(MxAnswer::NoData).into_mx(), Ok(MxAnswer::NoData));
    /// ```
    pub fn into_mx(self) -> Result<MxAnswer, DnsFailure> {
        match self {
            Self::Mx(m) => Ok(m),
            Self::Txt(_) | Self::Addrs(_) | Self::Dnssec(_) => {
                Err(DnsFailure::Malformed("expected an MX answer".into()))
            }
        }
    }

    /// The DNSSEC answer, as [`crate::io::DnssecResult`]. Any other answer (which a query made
    /// with [`DnsQuery::dnssec`] never yields) reads as [`DnsFailure::Malformed`].
    ///
    /// ```
    /// use mta_sts_core::io::{DnssecAnswer, DnssecData};
    /// use mta_sts_core::wire::dns::{DnsAnswer, MxAnswer};
    /// let answer = DnssecAnswer::new(true, 300, DnssecData::NoData);
    /// assert_eq!(DnsAnswer::Dnssec(answer.clone()).into_dnssec(), Ok(answer));
    /// assert!(DnsAnswer::Mx(MxAnswer::NoData).into_dnssec().is_err());
    /// ```
    pub fn into_dnssec(self) -> crate::io::DnssecResult {
        match self {
            Self::Dnssec(d) => Ok(d),
            Self::Txt(_) | Self::Addrs(_) | Self::Mx(_) => {
                Err(DnsFailure::Malformed("expected a DNSSEC answer".into()))
            }
        }
    }
}

/// Why a DNS response was not taken as the answer to a [`DnsQuery`].
///
/// Three kinds: [`Truncated`](Self::Truncated) means "ask again over TCP";
/// [`is_mismatch`](Self::is_mismatch) errors mean the message answers some other query (a late
/// or forged datagram: keep waiting on UDP); everything else is a failure of this server, which
/// converts into [`DnsFailure`].
///
/// ```
/// use mta_sts_core::io::DnsFailure;
/// use mta_sts_core::wire::dns::ResponseError;
/// assert!(ResponseError::IdMismatch { expected: 1, received: 2 }.is_mismatch());
/// assert_eq!(DnsFailure::from(ResponseError::ServerFailure), DnsFailure::ServerFailure);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The TC bit is set: the answer did not fit; ask again over TCP.
    Truncated,
    /// The message id is not the query's.
    IdMismatch {
        /// The query's id.
        expected: u16,
        /// The response's id.
        received: u16,
    },
    /// The message is a query (QR bit clear) or not a standard query's response (opcode).
    NotAResponse,
    /// The question section does not repeat the query's name, type and class.
    QuestionMismatch,
    /// The server answered SERVFAIL.
    ServerFailure,
    /// The server answered REFUSED.
    Refused,
    /// The server answered with another error response code (the numeric RCODE).
    ResponseCode(u16),
    /// The message is not a well-formed DNS message (the decoder's reason).
    Malformed(String),
    /// The CNAME records of the answer section form a loop.
    CnameLoop,
    /// The CNAME chain is longer than [`MAX_CNAME_CHAIN`].
    CnameChainTooLong,
}

impl ResponseError {
    /// True when the message is not a response to this query at all (wrong id, QR bit or
    /// question): on UDP, ignore it and keep waiting for the real answer until the deadline.
    ///
    /// ```
    /// use mta_sts_core::wire::dns::ResponseError;
    /// assert!(ResponseError::QuestionMismatch.is_mismatch());
    /// assert!(!ResponseError::CnameLoop.is_mismatch());
    /// ```
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            Self::IdMismatch { .. } | Self::NotAResponse | Self::QuestionMismatch
        )
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("response truncated (TC bit)"),
            Self::IdMismatch { expected, received } => {
                write!(
                    f,
                    "response id {received} does not match query id {expected}"
                )
            }
            Self::NotAResponse => f.write_str("message is not a response to a standard query"),
            Self::QuestionMismatch => f.write_str("response question does not match the query"),
            Self::ServerFailure => f.write_str("server failure (SERVFAIL)"),
            Self::Refused => f.write_str("query refused (REFUSED)"),
            Self::ResponseCode(c) => write!(f, "error response code {c}"),
            Self::Malformed(d) => write!(f, "malformed message: {d}"),
            Self::CnameLoop => f.write_str("CNAME loop in the answer"),
            Self::CnameChainTooLong => {
                write!(f, "CNAME chain longer than {MAX_CNAME_CHAIN} in the answer")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

impl From<ResponseError> for DnsFailure {
    /// SERVFAIL, REFUSED and other codes keep their meaning; everything else (a truncated
    /// message where no truncation is allowed, a mismatch, a malformed message, a CNAME loop) is
    /// [`DnsFailure::Malformed`].
    fn from(e: ResponseError) -> Self {
        match e {
            ResponseError::ServerFailure => Self::ServerFailure,
            ResponseError::Refused => Self::Refused,
            ResponseError::ResponseCode(c) => Self::ResponseCode(c),
            other => Self::Malformed(other.to_string()),
        }
    }
}

/// One DNS query (TXT, A, AAAA, MX or TLSA for one name, recursion desired, EDNS(0)), encoded
/// once, and the parser of the responses to it.
///
/// The id should be random (RFC 5452): the core has no random source, so the adapter picks it.
///
/// ```
/// use mta_sts_core::wire::dns::{DnsQuery, QueryType};
/// let q = DnsQuery::new("mta-sts.example.com", QueryType::A, 7)?;
/// assert_eq!(q.id(), 7);
/// assert_eq!(q.query_type(), QueryType::A);
/// assert_eq!(q.name(), "mta-sts.example.com");
/// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    id: u16,
    qtype: QueryType,
    display_name: String,
    name: Name,
    bytes: Vec<u8>,
    /// Made by [`DnsQuery::dnssec`]: DO and AD set, answered with a [`DnssecAnswer`].
    dnssec: bool,
}

impl DnsQuery {
    /// A query for `name` (A-labels, with or without the root dot) of type `qtype` with message
    /// id `id`. Fails on an empty name, a name with bytes other than printable ASCII (or a
    /// backslash), an empty label, a label over 63 bytes or a name over 255 bytes.
    ///
    /// ```
    /// use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// assert!(DnsQuery::new("example.com.", QueryType::Aaaa, 1).is_ok());
    /// assert!(DnsQuery::new("a..b", QueryType::Aaaa, 1).is_err());
    /// assert!(DnsQuery::new("bücher.example", QueryType::Aaaa, 1).is_err());
    /// ```
    pub fn new(name: &str, qtype: QueryType, id: u16) -> Result<Self, QueryError> {
        Self::build(name, qtype, id, false)
    }

    /// The query of a [`DnssecQuery`] (its name as is, and its type) with message id `id`, for
    /// a validating resolver: EDNS(0) with a payload of [`EDNS_UDP_PAYLOAD`] and the DNSSEC OK
    /// (DO) bit, and the AD bit set in the header, which asks the resolver to report in the
    /// response's AD bit whether it validated the answer (RFC 6840 §5.7). Its responses parse
    /// into a [`DnssecAnswer`] ([`parse_dnssec`](Self::parse_dnssec), or [`DnsAnswer::Dnssec`]
    /// through [`parse`](Self::parse)).
    ///
    /// The resolver must validate: this codec does not check signatures and takes the AD bit
    /// as the resolver's word (RFC 6698 §4.1, RFC 7672 §2.1.1), so that resolver must be one
    /// the MTA trusts, on a trusted path (normally on the same host, as Postfix requires with
    /// `smtp_dns_support_level = dnssec`).
    ///
    /// ```
    /// use mta_sts_core::io::{DnssecQuery, DnssecType};
    /// use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// let q = DnsQuery::dnssec(&DnssecQuery::new("_25._tcp.mx.example.com", DnssecType::Tlsa), 3)?;
    /// assert_eq!(q.query_type(), QueryType::Tlsa);
    /// assert!(q.is_dnssec());
    /// assert_eq!(q.bytes()[3] & 0x20, 0x20); // the AD bit
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn dnssec(query: &DnssecQuery, id: u16) -> Result<Self, QueryError> {
        Self::build(&query.name, QueryType::of_dnssec(query.rtype), id, true)
    }

    fn build(name: &str, qtype: QueryType, id: u16, dnssec: bool) -> Result<Self, QueryError> {
        let refuse = |reason: &str| QueryError {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let bare = name.strip_suffix('.').unwrap_or(name);
        if bare.is_empty() {
            return Err(refuse("empty name"));
        }
        if !bare.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
            return Err(refuse("not printable ASCII (use A-labels)"));
        }
        if bare.split('.').any(str::is_empty) {
            return Err(refuse("empty label"));
        }
        let mut dns_name = Name::from_ascii(bare).map_err(|e| refuse(&e.to_string()))?;
        dns_name.set_fqdn(true);
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.metadata.authentic_data = dnssec;
        msg.add_query(Query::query(dns_name.clone(), qtype.record_type()));
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_PAYLOAD);
        edns.set_dnssec_ok(dnssec);
        msg.set_edns(edns);
        let bytes = msg.to_vec().map_err(|e| refuse(&e.to_string()))?;
        Ok(Self {
            id,
            qtype,
            display_name: bare.to_owned(),
            name: dns_name,
            bytes,
            dnssec,
        })
    }

    /// The TXT query of an [`io::TxtQuery`](crate::io::TxtQuery) with message id `id`.
    ///
    /// ```
    /// use mta_sts_core::io::TxtQuery;
    /// use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// let q = DnsQuery::txt(&TxtQuery::new("_mta-sts.example.com"), 9)?;
    /// assert_eq!(q.query_type(), QueryType::Txt);
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn txt(query: &TxtQuery, id: u16) -> Result<Self, QueryError> {
        Self::new(&query.name, QueryType::Txt, id)
    }

    /// The message id.
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// assert_eq!(DnsQuery::new("example.com", QueryType::A, 0xbeef)?.id(), 0xbeef);
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The record type asked for.
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// assert_eq!(DnsQuery::new("example.com", QueryType::Aaaa, 1)?.query_type(), QueryType::Aaaa);
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn query_type(&self) -> QueryType {
        self.qtype
    }

    /// True for a query made with [`dnssec`](Self::dnssec): DO and AD set, answered with a
    /// [`DnssecAnswer`].
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// assert!(!DnsQuery::new("example.com", QueryType::Mx, 1)?.is_dnssec());
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn is_dnssec(&self) -> bool {
        self.dnssec
    }

    /// The name asked about, without the root dot.
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// assert_eq!(DnsQuery::new("Example.COM.", QueryType::A, 1)?.name(), "Example.COM");
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.display_name
    }

    /// The query message, as sent in one UDP datagram.
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// let q = DnsQuery::new("example.com", QueryType::A, 1)?;
    /// assert_eq!(q.bytes()[2] & 0x01, 0x01); // RD bit
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The query message with its 2-byte length prefix, as sent over TCP (RFC 1035 §4.2.2).
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType};
    /// let q = DnsQuery::new("example.com", QueryType::A, 1)?;
    /// let framed = q.tcp_bytes();
    /// assert_eq!(usize::from(u16::from_be_bytes([framed[0], framed[1]])), q.bytes().len());
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn tcp_bytes(&self) -> Vec<u8> {
        // A query for one name of at most 255 bytes plus an OPT record is far below 64 KiB.
        let len = u16::try_from(self.bytes.len()).unwrap_or(u16::MAX);
        let mut framed = Vec::with_capacity(self.bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&self.bytes);
        framed
    }

    /// Parses a response to this query (one UDP datagram, or one TCP message without its length
    /// prefix) into the answer of its [`QueryType`].
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType, ResponseError};
    /// let q = DnsQuery::new("example.com", QueryType::A, 1)?;
    /// // The query itself is not a response to it.
    /// assert_eq!(q.parse(q.bytes()), Err(ResponseError::NotAResponse));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn parse(&self, response: &[u8]) -> Result<DnsAnswer, ResponseError> {
        let msg = self.check(response)?;
        if self.dnssec {
            return self.dnssec_answer(&msg).map(DnsAnswer::Dnssec);
        }
        let nx = answer_code(msg.metadata.response_code)?;
        let chain = if nx {
            Chain::default()
        } else {
            self.follow_chain(&msg.answers)?
        };
        let found = chain.found;
        // RFC 2308 §5: the SOA's negative TTL, never more than the CNAMEs that led there.
        let negative_ttl = soa_negative_ttl(&msg.authorities).map(|n| {
            let ttl = chain.links.iter().map(|r| r.ttl).fold(n, u32::min);
            Duration::from_secs(u64::from(ttl))
        });
        Ok(match self.qtype {
            QueryType::Txt => DnsAnswer::Txt(match found {
                Some(rs) => TxtAnswer::Records(
                    rs.iter()
                        .filter_map(|r| match &r.data {
                            RData::TXT(txt) => Some(txt.txt_data.concat()),
                            _ => None,
                        })
                        .collect(),
                ),
                None if nx => TxtAnswer::NxDomain { negative_ttl },
                None => TxtAnswer::NoData { negative_ttl },
            }),
            QueryType::A | QueryType::Aaaa => DnsAnswer::Addrs(match found {
                Some(rs) => AddrAnswer::Addrs(rs.iter().filter_map(|r| r.data.ip_addr()).collect()),
                None if nx => AddrAnswer::NxDomain,
                None => AddrAnswer::NoData,
            }),
            QueryType::Mx => DnsAnswer::Mx(match found {
                Some(rs) => {
                    let mut mx: Vec<(u16, String)> = rs
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::MX(mx) => Some((mx.preference, exchange_host(&mx.exchange))),
                            _ => None,
                        })
                        .collect();
                    // Stable: equal preferences keep the answer's order.
                    mx.sort_by_key(|(preference, _)| *preference);
                    MxAnswer::Records(mx)
                }
                None if nx => MxAnswer::NxDomain,
                None => MxAnswer::NoData,
            }),
            // TLSA records only matter for DANE: their answer is always the DNSSEC one.
            QueryType::Tlsa => DnsAnswer::Dnssec(self.dnssec_answer(&msg)?),
        })
    }

    /// Parses a response to this query as the answer to a [`DnssecQuery`]: the same checks as
    /// [`parse`](Self::parse) (id, QR bit, opcode, question, CNAME chains, TC bit, response
    /// code), and then:
    ///
    /// - [`authenticated`](DnssecAnswer::authenticated) is the response's AD bit;
    /// - [`ttl`](DnssecAnswer::ttl) is the smallest TTL of the records used (those of the type
    ///   asked at the end of the CNAME chain, and the chain's CNAME records); for NXDOMAIN and
    ///   NODATA the negative-caching TTL of the authority section's SOA record (the smaller of
    ///   its TTL and its MINIMUM field, RFC 2308 §5), or 0 without a SOA record (and never more
    ///   than the CNAME records that led there);
    /// - [`data`](DnssecAnswer::data) holds, by the query's type: MX records as (preference,
    ///   host) in the order of the answer section, hosts in lowercase without the root dot (the
    ///   null MX of RFC 7505 has the host `"."`); A or AAAA addresses; TLSA records with their
    ///   usage, selector and matching type as published, unassigned values included, at most
    ///   [`MAX_TLSA_RECORDS`] (the rest are ignored); or NXDOMAIN or NODATA.
    ///
    /// A record of the type asked whose data cannot be read (a TLSA record shorter than its
    /// three fields, an empty RDATA) makes the response [`ResponseError::Malformed`]. A TXT
    /// query has no DNSSEC answer: [`ResponseError::QuestionMismatch`].
    ///
    /// ```
    /// use mta_sts_core::io::{DnssecQuery, DnssecType};
    /// use mta_sts_core::wire::dns::{DnsQuery, ResponseError};
    /// let q = DnsQuery::dnssec(&DnssecQuery::new("example.com", DnssecType::Mx), 0x0102)?;
    /// // A response header (QR, RD, RA, AD set) with no question: not an answer to this query.
    /// let response = [0x01, 0x02, 0x81, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0];
    /// assert_eq!(q.parse_dnssec(&response), Err(ResponseError::QuestionMismatch));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn parse_dnssec(&self, response: &[u8]) -> Result<DnssecAnswer, ResponseError> {
        let msg = self.check(response)?;
        self.dnssec_answer(&msg)
    }

    /// The [`DnssecAnswer`] of a checked response.
    fn dnssec_answer(&self, msg: &Message) -> Result<DnssecAnswer, ResponseError> {
        let Some(rtype) = self.qtype.dnssec_type() else {
            return Err(ResponseError::QuestionMismatch);
        };
        let nx = answer_code(msg.metadata.response_code)?;
        let authenticated = msg.metadata.authentic_data;
        let chain = if nx {
            Chain::default()
        } else {
            self.follow_chain(&msg.answers)?
        };
        let links_ttl = chain.links.iter().map(|r| r.ttl).min();
        let Some(found) = chain.found else {
            let negative = negative_ttl(&msg.authorities);
            let ttl = links_ttl.map_or(negative, |l| l.min(negative));
            let data = if nx {
                DnssecData::NxDomain
            } else {
                DnssecData::NoData
            };
            return Ok(DnssecAnswer::new(authenticated, ttl, data));
        };
        let ttl = found
            .iter()
            .map(|r| r.ttl)
            .chain(links_ttl)
            .min()
            .unwrap_or(0);
        let unreadable = |r: &Record| {
            ResponseError::Malformed(format!("{} record without readable data", r.record_type()))
        };
        let data = match rtype {
            DnssecType::Mx => DnssecData::Mx(
                found
                    .iter()
                    .map(|r| match &r.data {
                        RData::MX(mx) => Ok((
                            mx.preference,
                            exchange_host(&mx.exchange).to_ascii_lowercase(),
                        )),
                        _ => Err(unreadable(r)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            DnssecType::A | DnssecType::Aaaa => DnssecData::Addrs(
                found
                    .iter()
                    .map(|r| r.data.ip_addr().ok_or_else(|| unreadable(r)))
                    .collect::<Result<_, _>>()?,
            ),
            DnssecType::Tlsa => {
                let mut tlsa = Vec::with_capacity(found.len().min(MAX_TLSA_RECORDS));
                for r in &found {
                    let RData::TLSA(t) = &r.data else {
                        return Err(unreadable(r));
                    };
                    if tlsa.len() < MAX_TLSA_RECORDS {
                        tlsa.push(Tlsa::new(
                            t.cert_usage.into(),
                            t.selector.into(),
                            t.matching.into(),
                            t.cert_data.clone(),
                        ));
                    }
                }
                DnssecData::Tlsa(tlsa)
            }
        };
        Ok(DnssecAnswer::new(authenticated, ttl, data))
    }

    /// Parses a response to a TXT query: [`parse`](Self::parse) narrowed to [`TxtAnswer`].
    ///
    /// ```
    /// # use mta_sts_core::io::TxtQuery;
    /// # use mta_sts_core::wire::dns::{DnsQuery, ResponseError};
    /// let q = DnsQuery::txt(&TxtQuery::new("_mta-sts.example.com"), 1)?;
    /// assert!(matches!(q.parse_txt(&[0, 1, 0, 0, 0]), Err(ResponseError::Malformed(_))));
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn parse_txt(&self, response: &[u8]) -> Result<TxtAnswer, ResponseError> {
        match self.parse(response)? {
            DnsAnswer::Txt(t) => Ok(t),
            DnsAnswer::Addrs(_) | DnsAnswer::Mx(_) | DnsAnswer::Dnssec(_) => {
                Err(ResponseError::QuestionMismatch)
            }
        }
    }

    /// Parses a response to an A or AAAA query: [`parse`](Self::parse) narrowed to
    /// [`AddrAnswer`].
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType, ResponseError};
    /// let q = DnsQuery::new("mta-sts.example.com", QueryType::A, 1)?;
    /// assert!(q.parse_addrs(b"").is_err());
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn parse_addrs(&self, response: &[u8]) -> Result<AddrAnswer, ResponseError> {
        match self.parse(response)? {
            DnsAnswer::Addrs(a) => Ok(a),
            DnsAnswer::Txt(_) | DnsAnswer::Mx(_) | DnsAnswer::Dnssec(_) => {
                Err(ResponseError::QuestionMismatch)
            }
        }
    }

    /// Parses a response to an MX query: [`parse`](Self::parse) narrowed to [`MxAnswer`].
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::{DnsQuery, QueryType, ResponseError};
    /// let q = DnsQuery::new("example.com", QueryType::Mx, 1)?;
    /// assert!(q.parse_mx(b"").is_err());
    /// # Ok::<(), mta_sts_core::wire::dns::QueryError>(())
    /// ```
    pub fn parse_mx(&self, response: &[u8]) -> Result<MxAnswer, ResponseError> {
        match self.parse(response)? {
            DnsAnswer::Mx(m) => Ok(m),
            DnsAnswer::Txt(_) | DnsAnswer::Addrs(_) | DnsAnswer::Dnssec(_) => {
                Err(ResponseError::QuestionMismatch)
            }
        }
    }

    /// Checks the header and the question, then decodes the whole message and returns it (its
    /// response code is the full one, EDNS included).
    fn check(&self, response: &[u8]) -> Result<Message, ResponseError> {
        let malformed = |e: &dyn fmt::Display| ResponseError::Malformed(e.to_string());
        if response.len() > MAX_MESSAGE_SIZE {
            return Err(ResponseError::Malformed(format!(
                "{} bytes, more than a DNS message can hold",
                response.len()
            )));
        }
        // The id first: a message with another id is someone else's, however short or broken.
        if let Some(&[hi, lo]) = response.get(..2) {
            let received = u16::from_be_bytes([hi, lo]);
            if received != self.id {
                return Err(ResponseError::IdMismatch {
                    expected: self.id,
                    received,
                });
            }
        }
        if response.len() < 12 {
            return Err(ResponseError::Malformed(format!(
                "{} bytes, shorter than a DNS header",
                response.len()
            )));
        }
        let mut decoder = BinDecoder::new(response);
        let header = Header::read(&mut decoder).map_err(|e| malformed(&e))?;
        if header.metadata.message_type != MessageType::Response
            || header.metadata.op_code != OpCode::Query
        {
            return Err(ResponseError::NotAResponse);
        }
        // At most one question (checking the count first also keeps the decoder from reserving
        // room for up to 65535 questions on the word of a 12-byte message).
        if header.counts.queries > 1 {
            return Err(ResponseError::QuestionMismatch);
        }
        if header.metadata.truncation {
            // The rest may be cut anywhere; only a readable wrong question is held against it.
            if header.counts.queries == 1
                && Query::read(&mut decoder).is_ok_and(|q| !self.is_our_question(&q))
            {
                return Err(ResponseError::QuestionMismatch);
            }
            return Err(ResponseError::Truncated);
        }
        let msg = Message::from_vec(response).map_err(|e| malformed(&e))?;
        let rcode = msg.metadata.response_code;
        // Our question. Servers may leave it out of some error responses (FORMERR, REFUSED, …):
        // an empty question section is accepted only with such a code.
        match msg.queries.first() {
            Some(q) if !self.is_our_question(q) => Err(ResponseError::QuestionMismatch),
            None if matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) => {
                Err(ResponseError::QuestionMismatch)
            }
            _ => Ok(msg),
        }
    }

    fn is_our_question(&self, q: &Query) -> bool {
        q.name == self.name
            && q.query_type == self.qtype.record_type()
            && q.query_class == DNSClass::IN
    }

    /// Follows the CNAME chain from the query name through the answer section: the records of
    /// the asked type at the end of the chain (`None` when there are none) and the CNAME records
    /// that led there.
    fn follow_chain<'a>(&self, records: &'a [Record]) -> Result<Chain<'a>, ResponseError> {
        let wanted = self.qtype.record_type();
        let mut visited: Vec<&Name> = vec![&self.name];
        let mut links: Vec<&Record> = Vec::new();
        let mut current: &Name = &self.name;
        loop {
            let at_current = |r: &&Record| r.dns_class == DNSClass::IN && r.name == *current;
            let found: Vec<&Record> = records
                .iter()
                .filter(at_current)
                .filter(|r| r.record_type() == wanted)
                .collect();
            if !found.is_empty() {
                return Ok(Chain {
                    found: Some(found),
                    links,
                });
            }
            let next = records
                .iter()
                .filter(at_current)
                .find_map(|r| match &r.data {
                    RData::CNAME(c) => Some((r, &c.0)),
                    _ => None,
                });
            let Some((link, next)) = next else {
                return Ok(Chain { found: None, links });
            };
            if visited.contains(&next) {
                return Err(ResponseError::CnameLoop);
            }
            if visited.len() > MAX_CNAME_CHAIN {
                return Err(ResponseError::CnameChainTooLong);
            }
            visited.push(next);
            links.push(link);
            current = next;
        }
    }
}

/// What [`DnsQuery::follow_chain`] found.
#[derive(Default)]
struct Chain<'a> {
    /// The records of the asked type at the end of the chain, if any.
    found: Option<Vec<&'a Record>>,
    /// The CNAME records followed to get there.
    links: Vec<&'a Record>,
}

/// Sorts a response code: `Ok(false)` for NOERROR, `Ok(true)` for NXDOMAIN, the failure
/// otherwise.
fn answer_code(rcode: ResponseCode) -> Result<bool, ResponseError> {
    match rcode {
        ResponseCode::NoError => Ok(false),
        ResponseCode::NXDomain => Ok(true),
        ResponseCode::ServFail => Err(ResponseError::ServerFailure),
        ResponseCode::Refused => Err(ResponseError::Refused),
        other => Err(ResponseError::ResponseCode(u16::from(other))),
    }
}

/// The negative-caching TTL of a NXDOMAIN or NODATA response (RFC 2308 §5): the smaller of the
/// TTL and the MINIMUM field of the authority section's SOA record (the smallest over several),
/// 0 without one.
fn negative_ttl(authorities: &[Record]) -> u32 {
    soa_negative_ttl(authorities).unwrap_or(0)
}

/// The negative-caching TTL of the authority section's SOA records, `None` without one.
fn soa_negative_ttl(authorities: &[Record]) -> Option<u32> {
    authorities
        .iter()
        .filter(|r| r.dns_class == DNSClass::IN)
        .filter_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })
        .min()
}

/// An MX record's exchange as a host name: ASCII, without the root dot; the root itself (the
/// null MX of RFC 7505) stays `"."`.
fn exchange_host(name: &Name) -> String {
    if name.is_root() {
        return ".".to_owned();
    }
    let ascii = name.to_ascii();
    ascii.strip_suffix('.').unwrap_or(&ascii).to_owned()
}

/// Reassembles one DNS message read from a TCP stream (RFC 1035 §4.2.2: a 2-byte big-endian
/// length, then the message). Feed it the bytes as they arrive; it never holds more than the
/// prefix plus the announced length (at most 65537 bytes) and ignores anything after it.
///
/// ```
/// use mta_sts_core::wire::dns::TcpFramer;
/// let mut framer = TcpFramer::new();
/// assert_eq!(framer.push(&[0, 3, b'a']), None);
/// assert_eq!(framer.push(b"bcdef"), Some(&b"abc"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpFramer {
    buf: Vec<u8>,
}

impl TcpFramer {
    /// An empty framer.
    ///
    /// ```
    /// let framer = mta_sts_core::wire::dns::TcpFramer::new();
    /// assert_eq!(framer.missing(), 2);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn wanted(&self) -> usize {
        match self.buf.get(..2) {
            Some(&[hi, lo]) => 2 + usize::from(u16::from_be_bytes([hi, lo])),
            _ => 2,
        }
    }

    /// Appends bytes read from the stream; returns the message once it is complete (then and on
    /// every later call).
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::TcpFramer;
    /// let mut framer = TcpFramer::new();
    /// assert_eq!(framer.push(&[0]), None);
    /// assert_eq!(framer.push(&[1]), None);
    /// assert_eq!(framer.push(&[42, 43]), Some(&[42u8][..]));
    /// ```
    pub fn push(&mut self, data: &[u8]) -> Option<&[u8]> {
        let mut data = data;
        while !data.is_empty() {
            let room = self.wanted() - self.buf.len();
            if room == 0 {
                break;
            }
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        self.message()
    }

    /// The message, once complete.
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::TcpFramer;
    /// let mut framer = TcpFramer::new();
    /// framer.push(&[0, 0]);
    /// assert_eq!(framer.message(), Some(&[][..]));
    /// ```
    pub fn message(&self) -> Option<&[u8]> {
        if self.buf.len() >= 2 && self.buf.len() == self.wanted() {
            self.buf.get(2..)
        } else {
            None
        }
    }

    /// How many more bytes the message needs at least (0 once it is complete).
    ///
    /// ```
    /// # use mta_sts_core::wire::dns::TcpFramer;
    /// let mut framer = TcpFramer::new();
    /// framer.push(&[0, 10, 1]);
    /// assert_eq!(framer.missing(), 9);
    /// ```
    pub fn missing(&self) -> usize {
        self.wanted() - self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{DnssecQuery, DnssecType};
    use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NULL, SOA, TLSA, TXT};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("test name")
    }

    fn txt(owner: &str, strings: &[&[u8]]) -> Record {
        Record::from_rdata(
            name(owner),
            300,
            RData::TXT(TXT::from_bytes(strings.to_vec())),
        )
    }

    fn mx(owner: &str, preference: u16, exchange: &str) -> Record {
        Record::from_rdata(
            name(owner),
            300,
            RData::MX(MX::new(preference, name(exchange))),
        )
    }

    fn mx_query() -> DnsQuery {
        DnsQuery::new("example.com", QueryType::Mx, 0x4242).expect("valid name")
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
    }

    /// A response to `q` that echoes its question, with the given answers.
    fn response(q: &DnsQuery, answers: Vec<Record>) -> Message {
        let mut m = Message::response(q.id(), OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        let full = format!("{}.", q.name());
        m.add_query(Query::query(name(&full), q.query_type().record_type()));
        m.add_answers(answers);
        m
    }

    fn wire(m: &Message) -> Vec<u8> {
        m.to_vec().expect("encodable test message")
    }

    fn records(rs: &[&str]) -> Result<TxtAnswer, ResponseError> {
        Ok(TxtAnswer::Records(
            rs.iter().map(|r| r.as_bytes().to_vec()).collect(),
        ))
    }

    fn txt_query() -> DnsQuery {
        DnsQuery::txt(&TxtQuery::new("_mta-sts.example.com"), 0x4242).expect("valid name")
    }

    #[test]
    fn dns_query_bytes_decode_as_one_txt_question_with_edns() {
        let q = txt_query();
        let m = Message::from_vec(q.bytes()).expect("decodable");
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.message_type, MessageType::Query);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name, name("_mta-sts.example.com."));
        assert_eq!(m.queries[0].query_type, RecordType::TXT);
        assert_eq!(
            m.edns.as_ref().map(Edns::max_payload),
            Some(EDNS_UDP_PAYLOAD)
        );
        for (t, rt) in [
            (QueryType::A, RecordType::A),
            (QueryType::Aaaa, RecordType::AAAA),
        ] {
            let q = DnsQuery::new("mta-sts.example.com", t, 1).expect("valid");
            let m = Message::from_vec(q.bytes()).expect("decodable");
            assert_eq!(m.queries[0].query_type, rt);
        }
    }

    #[test]
    fn dns_query_rejects_bad_names() {
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "ex\\.ample",
            "bücher.example",
            &"a".repeat(64),
        ] {
            assert!(DnsQuery::new(bad, QueryType::Txt, 1).is_err(), "{bad:?}");
        }
        let long = ["abcdefghij"; 26].join(".");
        assert!(DnsQuery::new(&long, QueryType::Txt, 1).is_err());
    }

    #[test]
    fn dns_tcp_bytes_are_length_prefixed() {
        let q = txt_query();
        let framed = q.tcp_bytes();
        let mut f = TcpFramer::new();
        assert_eq!(f.push(&framed), Some(q.bytes()));
    }

    #[test]
    fn r5_dns_multi_string_txt_is_joined() {
        let q = txt_query();
        let m = response(
            &q,
            vec![txt("_mta-sts.example.com.", &[b"v=STSv1; id=ab", b"c1;"])],
        );
        assert_eq!(q.parse_txt(&wire(&m)), records(&["v=STSv1; id=abc1;"]));
    }

    #[test]
    fn dns_several_txt_records_are_kept_apart() {
        let q = txt_query();
        let m = response(
            &q,
            vec![
                txt("_mta-sts.example.com.", &[b"v=spf1 -all"]),
                txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"]),
                txt("_mta-sts.example.com.", &[b""]),
            ],
        );
        assert_eq!(
            q.parse_txt(&wire(&m)),
            records(&["v=spf1 -all", "v=STSv1; id=1;", ""])
        );
    }

    #[test]
    fn dns_owner_name_compared_case_insensitively() {
        let q = txt_query();
        let m = response(&q, vec![txt("_MTA-STS.Example.COM.", &[b"v=STSv1; id=1;"])]);
        assert_eq!(q.parse_txt(&wire(&m)), records(&["v=STSv1; id=1;"]));
    }

    #[test]
    fn r10_dns_cname_chain_is_followed() {
        let q = txt_query();
        let m = response(
            &q,
            vec![
                // Out of order on purpose, with an unrelated record.
                txt("_mta-sts.provider.example.", &[b"v=STSv1; id=prov;"]),
                txt("unrelated.example.", &[b"v=STSv1; id=other;"]),
                cname("_mta-sts.example.com.", "_mta-sts.mid.example."),
                cname("_mta-sts.mid.example.", "_mta-sts.provider.example."),
            ],
        );
        assert_eq!(q.parse_txt(&wire(&m)), records(&["v=STSv1; id=prov;"]));
    }

    #[test]
    fn dns_cname_to_nothing_is_no_data_and_nxdomain_follows_rcode() {
        let q = txt_query();
        let m = response(
            &q,
            vec![cname("_mta-sts.example.com.", "_mta-sts.provider.example.")],
        );
        assert_eq!(q.parse_txt(&wire(&m)), Ok(TxtAnswer::NODATA));
        let mut m = m;
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(q.parse_txt(&wire(&m)), Ok(TxtAnswer::NXDOMAIN));
    }

    #[test]
    fn dns_cname_loop_is_malformed() {
        let q = txt_query();
        let m = response(
            &q,
            vec![
                cname("_mta-sts.example.com.", "a.example."),
                cname("a.example.", "b.example."),
                cname("b.example.", "_mta-sts.example.com."),
            ],
        );
        let err = q.parse_txt(&wire(&m)).unwrap_err();
        assert_eq!(err, ResponseError::CnameLoop);
        assert!(matches!(DnsFailure::from(err), DnsFailure::Malformed(_)));
        let self_loop = response(
            &q,
            vec![cname("_mta-sts.example.com.", "_mta-sts.example.com.")],
        );
        assert_eq!(
            q.parse_txt(&wire(&self_loop)),
            Err(ResponseError::CnameLoop)
        );
    }

    #[test]
    fn dns_cname_chain_is_bounded() {
        let q = txt_query();
        let mut chain = vec![cname("_mta-sts.example.com.", "c0.example.")];
        for i in 0..MAX_CNAME_CHAIN {
            chain.push(cname(
                &format!("c{i}.example."),
                &format!("c{}.example.", i + 1),
            ));
        }
        chain.push(txt(
            &format!("c{MAX_CNAME_CHAIN}.example."),
            &[b"v=STSv1; id=1;"],
        ));
        let m = response(&q, chain.clone());
        assert_eq!(
            q.parse_txt(&wire(&m)),
            Err(ResponseError::CnameChainTooLong)
        );
        // One link shorter is accepted: exactly MAX_CNAME_CHAIN CNAMEs.
        let last = format!("c{}.example.", MAX_CNAME_CHAIN - 1);
        chain.truncate(MAX_CNAME_CHAIN);
        chain.push(txt(&last, &[b"v=STSv1; id=1;"]));
        let m = response(&q, chain);
        assert_eq!(q.parse_txt(&wire(&m)), records(&["v=STSv1; id=1;"]));
    }

    #[test]
    fn dns_wrong_id_is_mismatch() {
        let q = txt_query();
        let mut m = response(&q, vec![txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"])]);
        m.metadata.id = 0x4243;
        let err = q.parse_txt(&wire(&m)).unwrap_err();
        assert_eq!(
            err,
            ResponseError::IdMismatch {
                expected: 0x4242,
                received: 0x4243
            }
        );
        assert!(err.is_mismatch());
    }

    #[test]
    fn dns_wrong_question_is_mismatch() {
        let q = txt_query();
        for (qname, qtype) in [
            ("_mta-sts.example.org.", RecordType::TXT),
            ("_mta-sts.example.com.", RecordType::A),
        ] {
            let mut m = Message::response(q.id(), OpCode::Query);
            m.add_query(Query::query(name(qname), qtype));
            m.add_answer(txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"]));
            assert_eq!(q.parse_txt(&wire(&m)), Err(ResponseError::QuestionMismatch));
        }
        // Two questions, and no question in a NOERROR answer.
        let mut m = response(&q, vec![]);
        m.add_query(Query::query(name("x.example."), RecordType::TXT));
        assert_eq!(q.parse_txt(&wire(&m)), Err(ResponseError::QuestionMismatch));
        let m = Message::response(q.id(), OpCode::Query);
        assert_eq!(q.parse_txt(&wire(&m)), Err(ResponseError::QuestionMismatch));
    }

    #[test]
    fn dns_query_message_is_not_a_response() {
        let q = txt_query();
        assert_eq!(q.parse_txt(q.bytes()), Err(ResponseError::NotAResponse));
    }

    #[test]
    fn dns_nxdomain_with_soa_is_nxdomain() {
        let q = txt_query();
        let mut m = response(&q, vec![]);
        m.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(
            name("ns.example.com."),
            name("host.example.com."),
            1,
            2,
            3,
            4,
            5,
        );
        m.add_authority(Record::from_rdata(
            name("example.com."),
            300,
            RData::SOA(soa),
        ));
        // RFC 2308 §5: the smaller of the SOA's TTL (300) and its MINIMUM (5).
        let negative_ttl = Some(Duration::from_secs(5));
        assert_eq!(
            q.parse_txt(&wire(&m)),
            Ok(TxtAnswer::NxDomain { negative_ttl })
        );
        let a = DnsQuery::new("_mta-sts.example.com", QueryType::A, 0x4242).expect("valid");
        let mut m = response(&a, vec![]);
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(a.parse_addrs(&wire(&m)), Ok(AddrAnswer::NxDomain));
    }

    #[test]
    fn r12_dns_nodata_is_not_a_failure() {
        let q = txt_query();
        let m = response(
            &q,
            vec![Record::from_rdata(
                name("_mta-sts.example.com."),
                1,
                RData::A(A::new(192, 0, 2, 1)),
            )],
        );
        assert_eq!(q.parse_txt(&wire(&m)), Ok(TxtAnswer::NODATA));
    }

    #[test]
    fn s9_txt_negative_answers_carry_the_soa_negative_ttl() {
        let q = txt_query();
        let secs = |n| Some(Duration::from_secs(n));
        // NODATA: min(SOA TTL, MINIMUM), the smallest over several SOA records.
        let mut m = response(&q, vec![]);
        m.add_authority(soa_record("example.com.", 3600, 900));
        m.add_authority(soa_record("example.com.", 600, 7200));
        let negative_ttl = secs(600);
        assert_eq!(
            q.parse_txt(&wire(&m)),
            Ok(TxtAnswer::NoData { negative_ttl })
        );
        // NXDOMAIN with the MINIMUM smaller than the TTL.
        let mut m = response(&q, vec![]);
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_authority(soa_record("example.com.", 3600, 60));
        let negative_ttl = secs(60);
        assert_eq!(
            q.parse_txt(&wire(&m)),
            Ok(TxtAnswer::NxDomain { negative_ttl })
        );
        // No SOA: unknown.
        let m = response(&q, vec![]);
        assert_eq!(q.parse_txt(&wire(&m)), Ok(TxtAnswer::NODATA));
        // A CNAME that led to the NODATA caps it.
        let cname = Record::from_rdata(
            name("_mta-sts.example.com."),
            30,
            RData::CNAME(CNAME(name("sts.provider.example."))),
        );
        let mut m = response(&q, vec![cname]);
        m.add_authority(soa_record("provider.example.", 900, 900));
        let negative_ttl = secs(30);
        assert_eq!(
            q.parse_txt(&wire(&m)),
            Ok(TxtAnswer::NoData { negative_ttl })
        );
    }

    #[test]
    fn dns_servfail_refused_and_other_codes_are_failures() {
        let q = txt_query();
        for (rc, want) in [
            (ResponseCode::ServFail, ResponseError::ServerFailure),
            (ResponseCode::Refused, ResponseError::Refused),
            (ResponseCode::FormErr, ResponseError::ResponseCode(1)),
            (ResponseCode::NotImp, ResponseError::ResponseCode(4)),
        ] {
            let mut m = response(&q, vec![]);
            m.metadata.response_code = rc;
            assert_eq!(q.parse_txt(&wire(&m)), Err(want.clone()), "{rc:?}");
            // Without the question section too.
            let m = Message::error_msg(q.id(), OpCode::Query, rc);
            assert_eq!(q.parse_txt(&wire(&m)), Err(want), "{rc:?} without question");
        }
        assert_eq!(
            DnsFailure::from(ResponseError::Refused),
            DnsFailure::Refused
        );
        assert_eq!(
            DnsFailure::from(ResponseError::ResponseCode(4)),
            DnsFailure::ResponseCode(4)
        );
    }

    #[test]
    fn dns_tc_bit_is_truncated_even_when_cut() {
        let q = txt_query();
        let mut m = response(&q, vec![txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"])]);
        m.metadata.truncation = true;
        let bytes = wire(&m);
        assert_eq!(q.parse_txt(&bytes), Err(ResponseError::Truncated));
        // Cut inside the answer record and inside the question.
        assert_eq!(
            q.parse_txt(&bytes[..bytes.len() - 5]),
            Err(ResponseError::Truncated)
        );
        assert_eq!(q.parse_txt(&bytes[..20]), Err(ResponseError::Truncated));
        // A truncated response to another question is still a mismatch.
        let mut other = Message::response(q.id(), OpCode::Query);
        other.metadata.truncation = true;
        other.add_query(Query::query(name("x.example."), RecordType::TXT));
        assert_eq!(
            q.parse_txt(&wire(&other)),
            Err(ResponseError::QuestionMismatch)
        );
    }

    #[test]
    fn dns_truncated_message_without_tc_is_malformed() {
        let q = txt_query();
        let m = response(&q, vec![txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"])]);
        let bytes = wire(&m);
        for cut in [0, 1, 11, 12, 20, bytes.len() - 1] {
            let err = q.parse_txt(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, ResponseError::Malformed(_)),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn dns_compression_pointers_are_followed() {
        let q = txt_query();
        let m = response(&q, vec![txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"])]);
        let bytes = wire(&m);
        // hickory compresses the answer's owner name into a pointer to the question (0xC00C).
        let question_end = 12 + 22 + 4;
        assert_eq!(&bytes[question_end..question_end + 2], &[0xc0, 0x0c]);
        assert_eq!(q.parse_txt(&bytes), records(&["v=STSv1; id=1;"]));
        // A pointer to itself (a loop) or forward is rejected, without panicking.
        for target in [question_end as u8, 0xff] {
            let mut bad = bytes.clone();
            bad[question_end + 1] = target;
            assert!(matches!(
                q.parse_txt(&bad),
                Err(ResponseError::Malformed(_))
            ));
        }
    }

    #[test]
    fn dns_huge_question_count_is_rejected_early() {
        let q = txt_query();
        let mut bytes = wire(&response(&q, vec![]));
        bytes[4] = 0xff;
        bytes[5] = 0xff;
        assert_eq!(q.parse_txt(&bytes), Err(ResponseError::QuestionMismatch));
    }

    #[test]
    fn dns_addresses_through_cname() {
        let a = DnsQuery::new("mta-sts.example.com", QueryType::A, 5).expect("valid");
        let m = response(
            &a,
            vec![
                cname("mta-sts.example.com.", "web.example.net."),
                Record::from_rdata(name("web.example.net."), 60, RData::A(A::new(192, 0, 2, 1))),
                Record::from_rdata(name("web.example.net."), 60, RData::A(A::new(192, 0, 2, 2))),
                Record::from_rdata(name("other.example."), 60, RData::A(A::new(203, 0, 113, 9))),
            ],
        );
        let got = a.parse_addrs(&wire(&m)).expect("answer");
        assert_eq!(
            got.addrs(),
            &[
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "192.0.2.2".parse().unwrap()
            ]
        );
        let aaaa = DnsQuery::new("mta-sts.example.com", QueryType::Aaaa, 5).expect("valid");
        let v6 = "2001:db8::1".parse().expect("addr");
        let m = response(
            &aaaa,
            vec![Record::from_rdata(
                name("mta-sts.example.com."),
                60,
                RData::AAAA(AAAA(v6)),
            )],
        );
        assert_eq!(
            aaaa.parse_addrs(&wire(&m)),
            Ok(AddrAnswer::Addrs(vec![IpAddr::V6(v6)]))
        );
        assert_eq!(
            aaaa.parse_txt(&wire(&m)),
            Err(ResponseError::QuestionMismatch)
        );
    }

    #[test]
    fn dns_mx_query_asks_for_type_mx() {
        let q = mx_query();
        assert_eq!(q.query_type(), QueryType::Mx);
        let m = Message::from_vec(q.bytes()).expect("decodable");
        assert_eq!(m.queries[0].name, name("example.com."));
        assert_eq!(m.queries[0].query_type, RecordType::MX);
        assert!(m.metadata.recursion_desired);
    }

    #[test]
    fn dns_mx_records_sorted_by_preference_without_root_dot() {
        let q = mx_query();
        let m = response(
            &q,
            vec![
                mx("example.com.", 20, "MX2.Example.com."),
                mx("example.com.", 10, "mx1.example.com."),
                // Equal preferences keep the answer's order.
                mx("example.com.", 20, "mx3.example.net."),
                // Another owner, and another type at the owner: not ours.
                mx("other.example.", 1, "mx.other.example."),
                txt("example.com.", &[b"v=spf1 -all"]),
            ],
        );
        assert_eq!(
            q.parse_mx(&wire(&m)),
            Ok(MxAnswer::Records(vec![
                (10, "mx1.example.com".into()),
                (20, "MX2.Example.com".into()),
                (20, "mx3.example.net".into()),
            ]))
        );
        // The same through the general parser.
        assert!(matches!(q.parse(&wire(&m)), Ok(DnsAnswer::Mx(_))));
    }

    #[test]
    fn r33_dns_mx_nodata_and_nxdomain() {
        let q = mx_query();
        // A-only domain: NOERROR, no MX (the implicit MX is the domain itself, R33).
        let a_only = response(
            &q,
            vec![Record::from_rdata(
                name("example.com."),
                60,
                RData::A(A::new(192, 0, 2, 1)),
            )],
        );
        assert_eq!(q.parse_mx(&wire(&a_only)), Ok(MxAnswer::NoData));
        let mut nx = response(&q, vec![]);
        nx.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(q.parse_mx(&wire(&nx)), Ok(MxAnswer::NxDomain));
        assert!(MxAnswer::NxDomain.records().is_empty());
    }

    #[test]
    fn dns_mx_through_cname_and_null_mx() {
        let q = mx_query();
        let m = response(
            &q,
            vec![
                cname("example.com.", "mail.provider.example."),
                mx("mail.provider.example.", 5, "mx.provider.example."),
            ],
        );
        assert_eq!(
            q.parse_mx(&wire(&m)),
            Ok(MxAnswer::Records(vec![(5, "mx.provider.example".into())]))
        );
        // RFC 7505: "0 ." says the domain accepts no mail; the host is the root.
        let null = response(&q, vec![mx("example.com.", 0, ".")]);
        assert_eq!(
            q.parse_mx(&wire(&null)),
            Ok(MxAnswer::Records(vec![(0, ".".into())]))
        );
    }

    #[test]
    fn dns_mx_failures_and_mismatches() {
        let q = mx_query();
        let mut m = response(&q, vec![]);
        m.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(q.parse_mx(&wire(&m)), Err(ResponseError::ServerFailure));
        // A response to a TXT question is not an answer to the MX query.
        let t = txt_query();
        let txt_answer = response(&t, vec![txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"])]);
        let mut bytes = wire(&txt_answer);
        bytes[0] = 0x42;
        bytes[1] = 0x42;
        assert_eq!(q.parse_mx(&bytes), Err(ResponseError::QuestionMismatch));
        // And the narrowing helpers refuse the other kinds.
        assert!(DnsAnswer::Mx(MxAnswer::NoData).into_txt().is_err());
        assert!(DnsAnswer::Mx(MxAnswer::NoData).into_addrs().is_err());
        assert!(DnsAnswer::Txt(TxtAnswer::NODATA).into_mx().is_err());
        let a = DnsQuery::new("example.com", QueryType::A, 0x4242).expect("valid");
        let am = response(&a, vec![]);
        assert_eq!(a.parse_mx(&wire(&am)), Err(ResponseError::QuestionMismatch));
    }

    #[test]
    fn dns_tcp_framer_never_buffers_past_the_message() {
        let mut f = TcpFramer::new();
        assert_eq!(f.missing(), 2);
        assert_eq!(f.push(&[0xff, 0xff]), None);
        assert_eq!(f.missing(), 65535);
        let chunk = vec![7u8; 70_000];
        let msg = f.push(&chunk).expect("complete").len();
        assert_eq!(msg, 65535);
        assert_eq!(f.push(&chunk).map(<[u8]>::len), Some(65535));
        assert_eq!(f.missing(), 0);
    }

    fn dnssec_query(name: &str, rtype: DnssecType) -> DnsQuery {
        DnsQuery::dnssec(&DnssecQuery::new(name, rtype), 0x4242).expect("valid name")
    }

    fn tlsa_query() -> DnsQuery {
        dnssec_query("_25._tcp.mx.example.com", DnssecType::Tlsa)
    }

    fn tlsa(owner: &str, ttl: u32, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Record {
        Record::from_rdata(
            name(owner),
            ttl,
            RData::TLSA(TLSA::new(
                CertUsage::from(usage),
                Selector::from(selector),
                Matching::from(matching),
                data.to_vec(),
            )),
        )
    }

    /// A record of type `rtype` with these RDATA bytes, whatever they say.
    fn raw(owner: &str, rtype: RecordType, rdata: &[u8]) -> Record {
        let data = if rdata.is_empty() {
            RData::Update0(rtype)
        } else {
            RData::Unknown {
                code: rtype,
                rdata: NULL::with(rdata.to_vec()),
            }
        };
        Record::from_rdata(name(owner), 300, data)
    }

    fn soa_record(owner: &str, ttl: u32, minimum: u32) -> Record {
        let soa = SOA::new(
            name("ns.example.com."),
            name("host.example.com."),
            1,
            2,
            3,
            4,
            minimum,
        );
        Record::from_rdata(name(owner), ttl, RData::SOA(soa))
    }

    /// A response to `q` with the given answers and the AD bit as given, echoing DO.
    fn dnssec_response(q: &DnsQuery, answers: Vec<Record>, ad: bool) -> Message {
        let mut m = response(q, answers);
        m.metadata.authentic_data = ad;
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_PAYLOAD);
        edns.set_dnssec_ok(true);
        m.set_edns(edns);
        m
    }

    fn dnssec(
        authenticated: bool,
        ttl: u32,
        data: DnssecData,
    ) -> Result<DnssecAnswer, ResponseError> {
        Ok(DnssecAnswer::new(authenticated, ttl, data))
    }

    #[test]
    fn dnssec_query_sets_the_do_and_ad_bits_with_edns_payload() {
        for (rtype, record_type) in [
            (DnssecType::Mx, RecordType::MX),
            (DnssecType::A, RecordType::A),
            (DnssecType::Aaaa, RecordType::AAAA),
            (DnssecType::Tlsa, RecordType::TLSA),
        ] {
            let q = dnssec_query("_25._tcp.mx.example.com", rtype);
            assert!(q.is_dnssec());
            let m = Message::from_vec(q.bytes()).expect("decodable");
            assert_eq!(m.metadata.id, 0x4242);
            assert!(m.metadata.recursion_desired);
            assert!(m.metadata.authentic_data, "{rtype}: AD bit");
            assert!(!m.metadata.checking_disabled, "{rtype}: CD bit");
            assert_eq!(m.queries[0].name, name("_25._tcp.mx.example.com."));
            assert_eq!(m.queries[0].query_type, record_type);
            let edns = m.edns.as_ref().expect("EDNS(0)");
            assert_eq!(edns.max_payload(), EDNS_UDP_PAYLOAD);
            assert!(edns.flags().dnssec_ok, "{rtype}: DO bit");
        }
        // A plain query asks for neither.
        let m = Message::from_vec(mx_query().bytes()).expect("decodable");
        assert!(!m.metadata.authentic_data);
        assert!(!m.edns.as_ref().expect("EDNS(0)").flags().dnssec_ok);
        // Names are refused as for any query.
        assert!(DnsQuery::dnssec(&DnssecQuery::new("a..b", DnssecType::Tlsa), 1).is_err());
    }

    #[test]
    fn dnssec_answer_reports_the_ad_bit() {
        let q = tlsa_query();
        let owner = "_25._tcp.mx.example.com.";
        for ad in [true, false] {
            let m = dnssec_response(&q, vec![tlsa(owner, 600, 3, 1, 1, &[0xab; 32])], ad);
            let want = DnssecData::Tlsa(vec![Tlsa::new(3, 1, 1, vec![0xab; 32])]);
            assert_eq!(q.parse_dnssec(&wire(&m)), dnssec(ad, 600, want.clone()));
            // The same through the general parser (as the exchange driver uses it).
            assert_eq!(
                q.parse(&wire(&m)).map(DnsAnswer::into_dnssec),
                Ok(dnssec(ad, 600, want).map_err(|_| DnsFailure::Timeout))
            );
        }
        // Without EDNS in the response (a resolver that drops OPT): the AD bit still counts.
        let mut m = response(&q, vec![tlsa(owner, 600, 3, 1, 1, &[1; 32])]);
        m.metadata.authentic_data = true;
        assert!(q.parse_dnssec(&wire(&m)).expect("answer").authenticated);
    }

    #[test]
    fn dnssec_answer_ignores_signatures_and_the_echoed_do_bit() {
        let q = dnssec_query("example.com", DnssecType::Mx);
        let m = dnssec_response(
            &q,
            vec![
                mx("example.com.", 10, "mx1.example.com."),
                // An RRSIG covering the RRset: this codec does not check it (no dnssec feature).
                raw(
                    "example.com.",
                    RecordType::RRSIG,
                    &[0, 15, 13, 2, 0, 0, 1, 44],
                ),
            ],
            true,
        );
        assert_eq!(
            q.parse_dnssec(&wire(&m)),
            dnssec(
                true,
                300,
                DnssecData::Mx(vec![(10, "mx1.example.com".into())])
            )
        );
    }

    #[test]
    fn dnssec_tlsa_keeps_unassigned_usage_selector_and_matching_numbers() {
        let q = tlsa_query();
        let owner = "_25._tcp.mx.example.com.";
        let m = dnssec_response(
            &q,
            vec![
                tlsa(owner, 300, 2, 0, 1, &[1; 32]),
                tlsa(owner, 300, 7, 5, 9, &[2; 3]),
                tlsa(owner, 300, 255, 255, 255, &[]),
                tlsa(owner, 300, 0, 1, 2, &[3; 64]),
            ],
            true,
        );
        let got = q.parse_dnssec(&wire(&m)).expect("answer");
        assert_eq!(
            got.data,
            DnssecData::Tlsa(vec![
                Tlsa::new(2, 0, 1, vec![1; 32]),
                Tlsa::new(7, 5, 9, vec![2; 3]),
                Tlsa::new(255, 255, 255, Vec::new()),
                Tlsa::new(0, 1, 2, vec![3; 64]),
            ])
        );
    }

    #[test]
    fn dnssec_tlsa_rdata_shorter_than_its_fields_is_malformed() {
        let q = tlsa_query();
        let owner = "_25._tcp.mx.example.com.";
        for rdata in [&[][..], &[3], &[3, 1]] {
            // Alone, and followed by a good record (so that a short read could run into it).
            for after in [vec![], vec![tlsa(owner, 300, 3, 1, 1, &[9; 32])]] {
                let mut answers = vec![raw(owner, RecordType::TLSA, rdata)];
                answers.extend(after);
                let m = dnssec_response(&q, answers, true);
                let got = q.parse_dnssec(&wire(&m));
                assert!(
                    matches!(got, Err(ResponseError::Malformed(_))),
                    "{rdata:?}: {got:?}"
                );
                assert!(matches!(
                    DnsFailure::from(got.unwrap_err()),
                    DnsFailure::Malformed(_)
                ));
            }
        }
        // Three bytes are a record with no association data: kept (the core finds it unusable).
        let m = dnssec_response(&q, vec![raw(owner, RecordType::TLSA, &[3, 1, 1])], true);
        assert_eq!(
            q.parse_dnssec(&wire(&m)).map(|a| a.data),
            Ok(DnssecData::Tlsa(vec![Tlsa::new(3, 1, 1, Vec::new())]))
        );
    }

    #[test]
    fn dnssec_tlsa_rrset_is_capped_at_max_tlsa_records() {
        let q = tlsa_query();
        let owner = "_25._tcp.mx.example.com.";
        let answers: Vec<Record> = (0..MAX_TLSA_RECORDS + 10)
            .map(|i| tlsa(owner, 300, 3, 1, 1, &(i as u32).to_be_bytes()))
            .collect();
        let m = dnssec_response(&q, answers, true);
        let DnssecData::Tlsa(got) = q.parse_dnssec(&wire(&m)).expect("answer").data else {
            panic!("TLSA data");
        };
        assert_eq!(got.len(), MAX_TLSA_RECORDS);
        // The first ones, in the answer's order.
        assert_eq!(got[0].data(), &0u32.to_be_bytes());
        assert_eq!(
            got[MAX_TLSA_RECORDS - 1].data(),
            &((MAX_TLSA_RECORDS - 1) as u32).to_be_bytes()
        );
    }

    #[test]
    fn dnssec_tlsa_through_cname_takes_the_smallest_ttl_of_the_chain() {
        let q = tlsa_query();
        let m = dnssec_response(
            &q,
            vec![
                Record::from_rdata(
                    name("_25._tcp.mx.example.com."),
                    120,
                    RData::CNAME(CNAME(name("_25._tcp.mx.provider.example."))),
                ),
                tlsa("_25._tcp.mx.provider.example.", 3600, 3, 1, 1, &[7; 32]),
                tlsa("_25._tcp.mx.provider.example.", 1800, 3, 1, 2, &[8; 64]),
                // Another owner: not ours, and its small TTL does not count.
                tlsa("_25._tcp.other.example.", 5, 3, 1, 1, &[9; 32]),
            ],
            true,
        );
        let got = q.parse_dnssec(&wire(&m)).expect("answer");
        assert_eq!(got.ttl, 120);
        assert_eq!(
            got.data,
            DnssecData::Tlsa(vec![
                Tlsa::new(3, 1, 1, vec![7; 32]),
                Tlsa::new(3, 1, 2, vec![8; 64])
            ])
        );
        // Without the link being the smallest: the records' smallest TTL.
        let m = dnssec_response(
            &q,
            vec![
                cname("_25._tcp.mx.example.com.", "_25._tcp.mx.provider.example."),
                tlsa("_25._tcp.mx.provider.example.", 200, 3, 1, 1, &[7; 32]),
            ],
            false,
        );
        assert_eq!(
            q.parse_dnssec(&wire(&m)).map(|a| (a.authenticated, a.ttl)),
            Ok((false, 200))
        );
    }

    #[test]
    fn dnssec_cname_loops_and_long_chains_are_refused() {
        let q = tlsa_query();
        let m = dnssec_response(
            &q,
            vec![
                cname("_25._tcp.mx.example.com.", "a.example."),
                cname("a.example.", "_25._tcp.mx.example.com."),
            ],
            true,
        );
        assert_eq!(q.parse_dnssec(&wire(&m)), Err(ResponseError::CnameLoop));
        let mut chain = vec![cname("_25._tcp.mx.example.com.", "c0.example.")];
        for i in 0..=MAX_CNAME_CHAIN {
            chain.push(cname(
                &format!("c{i}.example."),
                &format!("c{}.example.", i + 1),
            ));
        }
        let m = dnssec_response(&q, chain, true);
        assert_eq!(
            q.parse_dnssec(&wire(&m)),
            Err(ResponseError::CnameChainTooLong)
        );
    }

    #[test]
    fn dnssec_nxdomain_and_nodata_take_the_soa_negative_ttl() {
        let q = tlsa_query();
        // NXDOMAIN: the smaller of the SOA's TTL and its MINIMUM.
        for (ttl, minimum, want) in [(3600, 300, 300), (60, 300, 60)] {
            let mut m = dnssec_response(&q, vec![], true);
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(soa_record("example.com.", ttl, minimum));
            assert_eq!(
                q.parse_dnssec(&wire(&m)),
                dnssec(true, want, DnssecData::NxDomain)
            );
        }
        // NODATA without a SOA: 0.
        let m = dnssec_response(&q, vec![], true);
        assert_eq!(
            q.parse_dnssec(&wire(&m)),
            dnssec(true, 0, DnssecData::NoData)
        );
        // NODATA at the end of a CNAME: never longer than the CNAME.
        let mut m = dnssec_response(
            &q,
            vec![Record::from_rdata(
                name("_25._tcp.mx.example.com."),
                30,
                RData::CNAME(CNAME(name("_25._tcp.mx.provider.example."))),
            )],
            false,
        );
        m.add_authority(soa_record("provider.example.", 900, 900));
        assert_eq!(
            q.parse_dnssec(&wire(&m)),
            dnssec(false, 30, DnssecData::NoData)
        );
    }

    #[test]
    fn dnssec_mx_hosts_lowercase_in_answer_order_with_null_mx() {
        let q = dnssec_query("example.com", DnssecType::Mx);
        let m = dnssec_response(
            &q,
            vec![
                mx("example.com.", 20, "MX2.Example.COM."),
                mx("example.com.", 10, "mx1.example.com."),
                mx("other.example.", 1, "mx.other.example."),
            ],
            true,
        );
        assert_eq!(
            q.parse_dnssec(&wire(&m)),
            dnssec(
                true,
                300,
                DnssecData::Mx(vec![
                    (20, "mx2.example.com".into()),
                    (10, "mx1.example.com".into())
                ])
            )
        );
        let null = dnssec_response(&q, vec![mx("example.com.", 0, ".")], true);
        assert_eq!(
            q.parse_dnssec(&wire(&null)),
            dnssec(true, 300, DnssecData::Mx(vec![(0, ".".into())]))
        );
        // An MX record with an empty RDATA is malformed, not skipped.
        let empty = dnssec_response(&q, vec![raw("example.com.", RecordType::MX, &[])], true);
        assert!(matches!(
            q.parse_dnssec(&wire(&empty)),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn dnssec_addresses_with_the_ad_bit() {
        let q = dnssec_query("mx.example.com", DnssecType::A);
        let m = dnssec_response(
            &q,
            vec![Record::from_rdata(
                name("mx.example.com."),
                90,
                RData::A(A::new(192, 0, 2, 25)),
            )],
            true,
        );
        assert_eq!(
            q.parse_dnssec(&wire(&m)),
            dnssec(
                true,
                90,
                DnssecData::Addrs(vec!["192.0.2.25".parse().unwrap()])
            )
        );
        let q6 = dnssec_query("mx.example.com", DnssecType::Aaaa);
        let v6: std::net::Ipv6Addr = "2001:db8::25".parse().unwrap();
        let m = dnssec_response(
            &q6,
            vec![Record::from_rdata(
                name("mx.example.com."),
                90,
                RData::AAAA(AAAA(v6)),
            )],
            false,
        );
        assert_eq!(
            q6.parse_dnssec(&wire(&m)),
            dnssec(false, 90, DnssecData::Addrs(vec![IpAddr::V6(v6)]))
        );
        // The A query does not take the AAAA answer.
        assert_eq!(
            q.parse_dnssec(&wire(&m)),
            Err(ResponseError::QuestionMismatch)
        );
    }

    #[test]
    fn dnssec_tc_servfail_and_txt_queries() {
        let q = tlsa_query();
        let owner = "_25._tcp.mx.example.com.";
        let mut m = dnssec_response(&q, vec![tlsa(owner, 300, 3, 1, 1, &[1; 32])], true);
        m.metadata.truncation = true;
        let bytes = wire(&m);
        assert_eq!(q.parse_dnssec(&bytes), Err(ResponseError::Truncated));
        assert_eq!(
            q.parse_dnssec(&bytes[..bytes.len() - 7]),
            Err(ResponseError::Truncated)
        );
        // A bogus answer comes from a validating resolver as SERVFAIL.
        let mut m = dnssec_response(&q, vec![], false);
        m.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(q.parse_dnssec(&wire(&m)), Err(ResponseError::ServerFailure));
        assert_eq!(
            DnsFailure::from(ResponseError::ServerFailure),
            DnsFailure::ServerFailure
        );
        // A TXT query has no DNSSEC answer.
        let t = txt_query();
        let m = response(&t, vec![txt("_mta-sts.example.com.", &[b"v=STSv1; id=1;"])]);
        assert_eq!(
            t.parse_dnssec(&wire(&m)),
            Err(ResponseError::QuestionMismatch)
        );
        // A plain TLSA query (no DO) parses into the DNSSEC answer too.
        let plain =
            DnsQuery::new("_25._tcp.mx.example.com", QueryType::Tlsa, 0x4242).expect("valid");
        assert!(!plain.is_dnssec());
        let m = response(&plain, vec![tlsa(owner, 300, 3, 1, 1, &[1; 32])]);
        assert!(matches!(plain.parse(&wire(&m)), Ok(DnsAnswer::Dnssec(a)) if !a.authenticated));
        assert!(plain.parse_mx(&wire(&m)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn dns_parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700)) {
            let q = txt_query();
            let _ = q.parse(&bytes);
            // And with the id and flags of a real response, so that parsing goes deeper.
            let mut b = bytes;
            if b.len() >= 4 {
                b[0] = 0x42; b[1] = 0x42; b[2] = 0x81; b[3] &= 0x0f;
            }
            let _ = q.parse(&b);
            let _ = TcpFramer::new().push(&b);
        }

        #[test]
        fn dns_parse_of_mutated_response_never_panics(
            pos in 0usize..200, val in proptest::prelude::any::<u8>(), cut in 0usize..200,
        ) {
            let txt_q = txt_query();
            let txt_m = response(&txt_q, vec![
                cname("_mta-sts.example.com.", "_mta-sts.p.example."),
                txt("_mta-sts.p.example.", &[b"v=STSv1; id=1;", b"x"]),
            ]);
            // And an MX answer, with a null MX.
            let mx_q = mx_query();
            let mx_m = response(&mx_q, vec![
                mx("example.com.", 10, "mx1.example.com."),
                mx("example.com.", 20, "."),
            ]);
            for (q, m) in [(txt_q, txt_m), (mx_q, mx_m)] {
                let mut b = wire(&m);
                if let Some(x) = b.get_mut(pos) { *x = val; }
                b.truncate(b.len().saturating_sub(cut % 8));
                let _ = q.parse(&b);
            }
            // And DNSSEC answers: TLSA through a CNAME, MX with a null MX, NXDOMAIN with a SOA.
            let tlsa_q = tlsa_query();
            let tlsa_m = dnssec_response(&tlsa_q, vec![
                cname("_25._tcp.mx.example.com.", "_25._tcp.mx.p.example."),
                tlsa("_25._tcp.mx.p.example.", 60, 3, 1, 1, &[5; 32]),
                tlsa("_25._tcp.mx.p.example.", 60, 2, 0, 0, &[6; 40]),
            ], true);
            let dmx_q = dnssec_query("example.com", DnssecType::Mx);
            let dmx_m = dnssec_response(&dmx_q, vec![
                mx("example.com.", 10, "mx1.example.com."),
                mx("example.com.", 0, "."),
            ], true);
            let mut nx_m = dnssec_response(&tlsa_q, vec![], true);
            nx_m.metadata.response_code = ResponseCode::NXDomain;
            nx_m.add_authority(soa_record("example.com.", 300, 60));
            for (q, m) in [(&tlsa_q, tlsa_m), (&dmx_q, dmx_m), (&tlsa_q, nx_m)] {
                let mut b = wire(&m);
                if let Some(x) = b.get_mut(pos) { *x = val; }
                b.truncate(b.len().saturating_sub(cut % 8));
                if let Ok(DnssecAnswer { data: DnssecData::Tlsa(t), .. }) = q.parse_dnssec(&b) {
                    proptest::prop_assert!(t.len() <= MAX_TLSA_RECORDS);
                }
            }
        }
    }
}
