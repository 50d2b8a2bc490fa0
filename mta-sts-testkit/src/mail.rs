//! Mail transactions on the fake MX, when the world accepts mail
//! ([`WorldBuilder::accept_mail`](crate::WorldBuilder::accept_mail)): `MAIL FROM`, `RCPT TO`
//! and `DATA` (RFC 5321 §3.3) are accepted, before or after STARTTLS, and every message is kept
//! as a [`ReceivedMail`] that says whether it came under TLS and for which MX host (the SNI
//! name), so that a test can prove where a sender delivered and how
//! ([`World::received_mail`](crate::World::received_mail)).
//!
//! Without it, the fake MX refuses the three commands with `502`, as it always did.
//!
//! Limits: [`MAX_MESSAGE`] bytes of message (a larger one is read to its end and refused with
//! `552`), [`MAX_RECIPIENTS`] recipients per message (`452` beyond), [`MAX_MAIL_KEPT`] messages
//! kept (the oldest are forgotten). Data lines are capped like command lines (the session's
//! line limit).

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::state::lock;

/// The largest message accepted, in bytes after dot-unstuffing (line ends included).
pub const MAX_MESSAGE: usize = 1 << 20;
/// The most recipients of one message.
pub const MAX_RECIPIENTS: usize = 100;
/// The most messages kept by the world; older ones are forgotten.
pub const MAX_MAIL_KEPT: usize = 1000;

/// One message the fake MX accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedMail {
    /// Whether the message came under TLS (after STARTTLS).
    pub tls: bool,
    /// The SNI name of the TLS session: the MX host the sender connected to. `None` without
    /// TLS or without SNI.
    pub sni: Option<String>,
    /// The reverse path of `MAIL FROM`, without the angle brackets (empty for `<>`).
    pub from: String,
    /// The forward paths of the `RCPT TO` commands, without the angle brackets.
    pub to: Vec<String>,
    /// The message as received: lines end in CRLF, leading dots unstuffed, without the final
    /// `.` line.
    pub data: Vec<u8>,
}

impl ReceivedMail {
    /// The message as text (lossily decoded).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Whether mail is accepted, and the messages received.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    accept: bool,
    received: VecDeque<ReceivedMail>,
    count: usize,
}

impl Mailbox {
    pub(crate) fn new(accept: bool) -> Self {
        let mailbox = Self::default();
        mailbox.set_accept(accept);
        mailbox
    }

    pub(crate) fn set_accept(&self, accept: bool) {
        lock(&self.inner).accept = accept;
    }

    pub(crate) fn accepts(&self) -> bool {
        lock(&self.inner).accept
    }

    pub(crate) fn received(&self) -> Vec<ReceivedMail> {
        lock(&self.inner).received.iter().cloned().collect()
    }

    /// Keeps `mail`; returns its number (1 for the first message of the world).
    fn keep(&self, mail: ReceivedMail) -> usize {
        let mut kept = lock(&self.inner);
        if kept.received.len() >= MAX_MAIL_KEPT {
            kept.received.pop_front();
        }
        kept.received.push_back(mail);
        kept.count += 1;
        kept.count
    }
}

/// What the session does after a mail command.
pub(crate) enum Step {
    /// Send this reply and go on.
    Reply(String),
    /// Send `354` and read the message ([`Transaction::data`]).
    ReadData,
}

/// The mail transaction of one session (before or after TLS: STARTTLS starts a new one).
#[derive(Debug)]
pub(crate) struct Transaction {
    tls: bool,
    sni: Option<String>,
    from: Option<String>,
    to: Vec<String>,
}

impl Transaction {
    pub(crate) fn new(tls: bool, sni: Option<String>) -> Self {
        Self {
            tls,
            sni,
            from: None,
            to: Vec::new(),
        }
    }

    /// The step for `command` if it is a mail command (`verb` is its first word, uppercase);
    /// `None` for any other command, which also ends the transaction if it is `RSET`, `EHLO`
    /// or `HELO` (RFC 5321 §4.1.4).
    pub(crate) fn command(&mut self, verb: &str, command: &str) -> Option<Step> {
        let reply = |text: &str| Some(Step::Reply(format!("{text}\r\n")));
        match verb {
            "MAIL" => match (&self.from, path_after(command, "FROM:")) {
                (Some(_), _) => reply("503 5.5.1 Nested MAIL command"),
                (None, None) => reply("501 5.5.4 Syntax: MAIL FROM:<address>"),
                (None, Some(from)) => {
                    self.from = Some(from);
                    reply("250 2.1.0 OK")
                }
            },
            "RCPT" => match (&self.from, path_after(command, "TO:")) {
                (None, _) => reply("503 5.5.1 Need MAIL before RCPT"),
                (Some(_), None) => reply("501 5.5.4 Syntax: RCPT TO:<address>"),
                (Some(_), Some(_)) if self.to.len() >= MAX_RECIPIENTS => {
                    reply("452 4.5.3 Too many recipients")
                }
                (Some(_), Some(to)) => {
                    self.to.push(to);
                    reply("250 2.1.5 OK")
                }
            },
            "DATA" if self.to.is_empty() => reply("503 5.5.1 Need RCPT before DATA"),
            "DATA" => Some(Step::ReadData),
            "RSET" | "EHLO" | "HELO" => {
                self.reset();
                None
            }
            _ => None,
        }
    }

    /// Reads the message with `next_line` (each line with its line end; `None` when the
    /// connection ended or a line was too long), keeps it in `mailbox` and returns the reply;
    /// `None` when the connection is to be closed.
    pub(crate) fn data(
        &mut self,
        mailbox: &Mailbox,
        mut next_line: impl FnMut() -> Option<Vec<u8>>,
    ) -> Option<String> {
        let mut data = Vec::new();
        let mut too_big = false;
        loop {
            let line = next_line()?;
            let body = line
                .strip_suffix(b"\r\n")
                .or_else(|| line.strip_suffix(b"\n"))
                .unwrap_or(&line);
            if body == b"." {
                break;
            }
            // RFC 5321 §4.5.2: a leading dot was doubled by the sender.
            let body = body.strip_prefix(b".").unwrap_or(body);
            too_big = too_big || data.len() + body.len() + 2 > MAX_MESSAGE;
            if !too_big {
                data.extend_from_slice(body);
                data.extend_from_slice(b"\r\n");
            }
        }
        let from = self.from.take().unwrap_or_default();
        let to = std::mem::take(&mut self.to);
        if too_big {
            return Some("552 5.3.4 Message too big\r\n".into());
        }
        let n = mailbox.keep(ReceivedMail {
            tls: self.tls,
            sni: self.sni.clone(),
            from,
            to,
            data,
        });
        Some(format!("250 2.0.0 OK queued as {n}\r\n"))
    }

    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
    }
}

/// The path of `MAIL FROM:<a@b> SIZE=1` (`keyword` `FROM:`) or `RCPT TO:<a@b>`, without the
/// angle brackets; `None` when the command is not of that form.
fn path_after(command: &str, keyword: &str) -> Option<String> {
    let (_, rest) = command.split_once(' ')?;
    let rest = rest.trim_start();
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = rest[keyword.len()..].trim_start().strip_prefix('<')?;
    let (path, _parameters) = path.split_once('>')?;
    Some(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{MAX_MESSAGE, Mailbox, Step, Transaction, path_after};

    fn reply(step: Option<Step>) -> String {
        match step {
            Some(Step::Reply(r)) => r,
            Some(Step::ReadData) => "354".into(),
            None => "none".into(),
        }
    }

    #[test]
    fn paths_are_read_with_or_without_parameters() {
        assert_eq!(
            path_after("MAIL FROM:<a@b.example> SIZE=10", "FROM:").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(path_after("mail from: <>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_after("RCPT TO:<c@d>", "TO:").as_deref(), Some("c@d"));
        assert_eq!(path_after("MAIL FROM:a@b", "FROM:"), None);
        assert_eq!(path_after("MAIL", "FROM:"), None);
        assert_eq!(path_after("RCPT FROM:<x>", "TO:"), None);
        assert_eq!(path_after("MAIL FR\u{e9}:<x>", "FROM:"), None);
    }

    #[test]
    fn commands_in_the_wrong_order_are_refused_and_rset_ends_the_transaction() {
        let mut t = Transaction::new(false, None);
        assert!(reply(t.command("RCPT", "RCPT TO:<a@b>")).starts_with("503 "));
        assert!(reply(t.command("DATA", "DATA")).starts_with("503 "));
        assert!(reply(t.command("MAIL", "MAIL FROM:<a@b>")).starts_with("250 "));
        assert!(reply(t.command("MAIL", "MAIL FROM:<a@b>")).starts_with("503 "));
        assert!(reply(t.command("DATA", "DATA")).starts_with("503 "));
        assert!(reply(t.command("RCPT", "RCPT TO:<c@d>")).starts_with("250 "));
        assert_eq!(reply(t.command("DATA", "DATA")), "354");
        assert_eq!(reply(t.command("RSET", "RSET")), "none");
        assert!(reply(t.command("DATA", "DATA")).starts_with("503 "));
        assert_eq!(reply(t.command("NOOP", "NOOP")), "none");
    }

    #[test]
    fn data_is_unstuffed_kept_and_bounded() {
        let mailbox = Mailbox::new(true);
        let mut t = Transaction::new(true, Some("mx.example".into()));
        reply(t.command("MAIL", "MAIL FROM:<a@b>"));
        reply(t.command("RCPT", "RCPT TO:<c@d>"));
        let mut lines = [&b"Subject: x\r\n"[..], b"\r\n", b"..dot\n", b".\r\n"].into_iter();
        let r = t.data(&mailbox, || lines.next().map(<[u8]>::to_vec));
        assert_eq!(r.as_deref(), Some("250 2.0.0 OK queued as 1\r\n"));
        let got = mailbox.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text(), "Subject: x\r\n\r\n.dot\r\n");
        assert_eq!(
            (got[0].tls, got[0].sni.as_deref()),
            (true, Some("mx.example"))
        );
        assert_eq!(
            (got[0].from.as_str(), got[0].to.as_slice()),
            ("a@b", &["c@d".to_owned()][..])
        );

        // A message over the limit is read to its end and refused; nothing is kept.
        reply(t.command("MAIL", "MAIL FROM:<a@b>"));
        reply(t.command("RCPT", "RCPT TO:<c@d>"));
        let line = vec![b'x'; 998];
        let mut n = 0;
        let r = t.data(&mailbox, || {
            n += 1;
            Some(if n > MAX_MESSAGE / 900 {
                b".\r\n".to_vec()
            } else {
                line.clone()
            })
        });
        assert!(r.is_some_and(|r| r.starts_with("552 ")));
        assert_eq!(mailbox.received().len(), 1);
        // A connection that ends inside DATA closes the session.
        assert_eq!(t.data(&mailbox, || None), None);
    }
}
