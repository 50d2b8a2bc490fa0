//! The authoritative DNS server: UDP and TCP on 127.0.0.1, answers from the world's state.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TLSA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record as HRecord, RecordType as HType};

use crate::scenario::{DnsFault, Record, RecordType};
use crate::state::{lock, normalize, read};
use crate::world::Shared;

/// Longest CNAME chain followed in one answer.
const MAX_CHAIN: usize = 8;
/// Largest UDP answer, whatever the client's EDNS buffer size says.
const MAX_UDP: usize = 4096;
/// UDP worker threads sharing the socket.
pub(crate) const UDP_WORKERS: usize = 2;
/// How often a UDP worker checks for shutdown if it missed its wake-up datagram.
const UDP_POLL: Duration = Duration::from_millis(250);
/// Most DNS messages answered on one TCP connection.
const MAX_TCP_MESSAGES: usize = 10_000;
/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
pub(crate) const EDE_OPTION: u16 = 15;
/// The Extended DNS Error "DNSSEC Bogus" (RFC 8914 §4.7).
pub(crate) const EDE_DNSSEC_BOGUS: u16 = 6;

pub(crate) struct Sockets {
    pub(crate) udp: UdpSocket,
    pub(crate) tcp: TcpListener,
}

/// Binds UDP and TCP on 127.0.0.1, on the same port when possible.
pub(crate) fn bind() -> io::Result<Sockets> {
    for _ in 0..16 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return Ok(Sockets { udp, tcp });
        }
    }
    Ok(Sockets {
        udp: UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?,
        tcp: TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
    })
}

/// Binds UDP and TCP on `addr` (both on its port).
pub(crate) fn bind_at(addr: SocketAddr) -> io::Result<Sockets> {
    Ok(Sockets {
        udp: UdpSocket::bind(addr)?,
        tcp: TcpListener::bind(addr)?,
    })
}

pub(crate) fn serve_udp(shared: &Shared, sock: &UdpSocket) {
    let _ = sock.set_read_timeout(Some(UDP_POLL));
    let latency = shared.settings.dns_latency;
    let in_flight = &shared.counters.dns_in_flight;
    let mut buf = vec![0u8; 65_535];
    while !shared.sup.is_closed() {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if shared.sup.is_closed() {
            break;
        }
        in_flight.enter();
        match answer(shared, &buf[..n], false) {
            // The delayed sender sends it and counts it as answered.
            Some(resp) if !latency.is_zero() => shared.delayed.push(latency, resp, peer),
            Some(resp) => {
                // Answered from here on: once the client has the answer, it is counted so.
                in_flight.leave();
                let _ = sock.send_to(&resp, peer);
            }
            None => in_flight.leave(),
        }
    }
}

/// UDP answers held back by the world's DNS latency, in the order they are due (each waits
/// the same time).
#[derive(Debug, Default)]
pub(crate) struct Delayed {
    queue: Mutex<VecDeque<(Instant, Vec<u8>, SocketAddr)>>,
    added: Condvar,
}

impl Delayed {
    fn push(&self, latency: Duration, resp: Vec<u8>, peer: SocketAddr) {
        lock(&self.queue).push_back((Instant::now() + latency, resp, peer));
        self.added.notify_one();
    }

    /// Wakes the delayed sender, so that it sees the world closing. Taking the lock first
    /// orders this after its last look at the flag: it is either waiting or about to look.
    pub(crate) fn wake(&self) {
        let _queue = lock(&self.queue);
        self.added.notify_all();
    }
}

/// Sends the delayed UDP answers when they are due, until the world closes.
pub(crate) fn send_delayed(shared: &Shared, sock: &UdpSocket) {
    let delayed = &shared.delayed;
    let mut queue = lock(&delayed.queue);
    while !shared.sup.is_closed() {
        let now = Instant::now();
        queue = match queue.front() {
            Some((due, ..)) if *due <= now => {
                let Some((_, resp, peer)) = queue.pop_front() else {
                    continue;
                };
                drop(queue);
                shared.counters.dns_in_flight.leave();
                let _ = sock.send_to(&resp, peer);
                lock(&delayed.queue)
            }
            Some((due, ..)) => {
                let wait = *due - now;
                let waited = delayed.added.wait_timeout(queue, wait);
                waited.unwrap_or_else(PoisonError::into_inner).0
            }
            None => delayed
                .added
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

pub(crate) fn serve_tcp(shared: &Arc<Shared>, listener: &TcpListener) {
    let sh = Arc::clone(shared);
    shared
        .sup
        .accept_loop(listener, "dns-tcp-conn", move |stream, _guard| {
            serve_tcp_conn(&sh, stream);
        });
}

fn serve_tcp_conn(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(shared.settings.idle_timeout));
    let _ = stream.set_write_timeout(Some(shared.settings.idle_timeout));
    let _ = stream.set_nodelay(true);
    let mut msg = Vec::new();
    for _ in 0..MAX_TCP_MESSAGES {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes(len));
        msg.resize(len, 0);
        if stream.read_exact(&mut msg).is_err() {
            return;
        }
        let in_flight = shared.counters.dns_in_flight.hold();
        let Some(resp) = answer(shared, &msg, true) else {
            continue;
        };
        // The world's DNS latency, on this connection's own thread.
        std::thread::sleep(shared.settings.dns_latency);
        drop(in_flight);
        let Ok(rlen) = u16::try_from(resp.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&rlen.to_be_bytes());
        out.extend_from_slice(&resp);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// The answer to one DNS message, or `None` to send nothing.
pub(crate) fn answer(shared: &Shared, msg: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let Ok(req) = Message::from_vec(msg) else {
        return form_error(msg);
    };
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.checking_disabled = req.metadata.checking_disabled;
    // A client signals that it understands the AD bit with DO (RFC 3225) or with AD in the
    // query (RFC 6840 §5.7); only then may the AD bit be set.
    let wants_ad =
        req.metadata.authentic_data || req.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        resp.set_edns(e);
    }
    let udp_limit = if req.edns.is_some() {
        usize::from(req.max_payload()).min(MAX_UDP)
    } else {
        512
    };
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp.to_vec().ok();
    }
    let [q] = req.queries.as_slice() else {
        resp.add_queries(req.queries.iter().cloned());
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp.to_vec().ok();
    };
    resp.add_query(q.clone());
    let qname = normalize(&q.name().to_ascii());
    let qcode = u16::from(q.query_type());
    shared.counters.dns_query(&qname, qcode, tcp);
    if q.query_class() != DNSClass::IN {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp.to_vec().ok();
    }

    let mut truncate = false;
    let mut signed = true;
    match resolve(
        shared,
        q.name().clone(),
        qname,
        qcode,
        &mut resp,
        &mut signed,
    ) {
        Resolved::Done => {}
        Resolved::Truncate => truncate = true,
        Resolved::NoAnswer => return None,
        Resolved::Error(code) => {
            resp.answers.clear();
            resp.authorities.clear();
            resp.metadata.response_code = code;
        }
        Resolved::Bogus => {
            resp.answers.clear();
            resp.authorities.clear();
            resp.metadata.response_code = ResponseCode::ServFail;
            if let Some(edns) = resp.edns.as_mut() {
                edns.options_mut().insert(EdnsOption::Unknown(
                    EDE_OPTION,
                    EDE_DNSSEC_BOGUS.to_be_bytes().to_vec(),
                ));
            }
        }
    }
    // As a validating resolver would: AD only on positive and negative answers whose every
    // name (the CNAME chain included) lies in a signed zone.
    resp.metadata.authentic_data = wants_ad
        && signed
        && matches!(
            resp.metadata.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        );
    resp.metadata.authoritative = matches!(
        resp.metadata.response_code,
        ResponseCode::NoError | ResponseCode::NXDomain
    );
    let bytes = match resp.to_vec() {
        Ok(b) => b,
        Err(_) => {
            resp.answers.clear();
            resp.authorities.clear();
            resp.metadata.response_code = ResponseCode::ServFail;
            resp.to_vec().ok()?
        }
    };
    if !tcp && (truncate || bytes.len() > udp_limit) {
        return resp.truncate().to_vec().ok();
    }
    Some(bytes)
}

enum Resolved {
    Done,
    Truncate,
    NoAnswer,
    Error(ResponseCode),
    Bogus,
}

/// Fills the answer (following CNAMEs) and authority sections. `signed` is cleared when a
/// name of the answer lies outside the signed zones.
fn resolve(
    shared: &Shared,
    mut owner: Name,
    mut name: String,
    qcode: u16,
    resp: &mut Message,
    signed: &mut bool,
) -> Resolved {
    let state = read(&shared.state);
    let ttl = state.ttl;
    let qtype = RecordType::from_code(qcode);
    let any = qcode == 255;
    let mut truncate = false;
    for _ in 0..MAX_CHAIN {
        let mut nx = false;
        *signed &= state.is_signed(&name);
        match state.fault(&name, qtype) {
            Some(DnsFault::NoAnswer) => return Resolved::NoAnswer,
            Some(DnsFault::Bogus) => return Resolved::Bogus,
            Some(DnsFault::ServFail) => return Resolved::Error(ResponseCode::ServFail),
            Some(DnsFault::Refused) => return Resolved::Error(ResponseCode::Refused),
            Some(DnsFault::NxDomain) => nx = true,
            Some(DnsFault::TruncateUdp) => truncate = true,
            None => {}
        }
        let records = if nx { None } else { state.records_at(&name) };
        let Some(records) = records else {
            resp.metadata.response_code = ResponseCode::NXDomain;
            add_soa(resp, &state.soa_for(&name));
            break;
        };
        let mut matched = false;
        for r in records.iter().filter(|r| any || r.record_type() == qtype) {
            if let Some(data) = to_rdata(r) {
                resp.add_answer(HRecord::from_rdata(owner.clone(), ttl, data));
                matched = true;
            }
        }
        if matched {
            break;
        }
        let target = records.iter().find_map(|r| match r {
            Record::Cname(t) => Some(t.clone()),
            _ => None,
        });
        match target.and_then(|t| Some((fqdn(&t)?, t))) {
            Some((target_name, target)) if qtype != RecordType::Cname => {
                resp.add_answer(HRecord::from_rdata(
                    owner,
                    ttl,
                    RData::CNAME(CNAME(target_name.clone())),
                ));
                owner = target_name;
                name = target;
            }
            _ => {
                add_soa(resp, &state.soa_for(&name));
                break;
            }
        }
    }
    if truncate {
        Resolved::Truncate
    } else {
        Resolved::Done
    }
}

fn add_soa(resp: &mut Message, (apex, soa): &(String, Record)) {
    let ttl = match soa {
        Record::Soa { minimum, .. } => *minimum,
        _ => 0,
    };
    if let (Some(owner), Some(data)) = (fqdn(apex), to_rdata(soa)) {
        resp.add_authority(HRecord::from_rdata(owner, ttl, data));
    }
}

/// A fully qualified name from a normalized one (`""` is the root).
fn fqdn(name: &str) -> Option<Name> {
    if name.is_empty() {
        return Some(Name::root());
    }
    Name::from_ascii(format!("{name}.")).ok()
}

fn to_rdata(r: &Record) -> Option<RData> {
    Some(match r {
        Record::A(ip) => RData::A(A(*ip)),
        Record::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Record::Txt(t) => RData::TXT(TXT::from_bytes(
            t.parts().iter().map(Vec::as_slice).collect(),
        )),
        Record::Cname(t) => RData::CNAME(CNAME(fqdn(t)?)),
        Record::Mx(p, h) => RData::MX(MX::new(*p, fqdn(h)?)),
        Record::Soa {
            mname,
            rname,
            serial,
            minimum,
        } => RData::SOA(SOA::new(
            fqdn(mname)?,
            fqdn(rname)?,
            *serial,
            3600,
            600,
            86400,
            *minimum,
        )),
        Record::Tlsa {
            usage,
            selector,
            matching_type,
            data,
        } => RData::TLSA(TLSA::new(
            (*usage).into(),
            (*selector).into(),
            (*matching_type).into(),
            data.clone(),
        )),
        Record::Other(_) => return None,
    })
}

/// Decodes a record from the wire types (used by the probes).
pub(crate) fn from_rdata(r: &RData) -> Record {
    let name = |n: &Name| normalize(&n.to_ascii());
    match r {
        RData::A(a) => Record::A(a.0),
        RData::AAAA(a) => Record::Aaaa(a.0),
        RData::TXT(t) => Record::Txt(crate::scenario::Txt::strings(t.txt_data.iter())),
        RData::CNAME(c) => Record::Cname(name(&c.0)),
        RData::MX(m) => Record::Mx(m.preference, name(&m.exchange)),
        RData::SOA(s) => Record::Soa {
            mname: name(&s.mname),
            rname: name(&s.rname),
            serial: s.serial,
            minimum: s.minimum,
        },
        RData::TLSA(t) => Record::Tlsa {
            usage: t.cert_usage.into(),
            selector: t.selector.into(),
            matching_type: t.matching.into(),
            data: t.cert_data.clone(),
        },
        other => Record::Other(RecordType::from_code(u16::from(other.record_type()))),
    }
}

/// FORMERR for a message that does not parse but has a query header; nothing otherwise.
fn form_error(msg: &[u8]) -> Option<Vec<u8>> {
    let header = msg.get(..4)?;
    if msg.len() < 12 || header[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

pub(crate) fn record_type_to_wire(t: RecordType) -> HType {
    HType::from(t.code())
}
