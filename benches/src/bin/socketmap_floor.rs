//! `socketmap-floor`: a socketmap server that does no work, the floor against which the
//! daemons' cached figures are read. It answers every request `<map> <key>` at once with the
//! reply both daemons give for a test-world bulk domain
//! ([`mta_sts_benches::socketmap::enforce_reply`]), on one thread per connection
//! with blocking sockets: one `read` for all the requests that have arrived, one `write` for
//! all their replies. What it reaches with `socketmap-load` on the same machine is what the
//! kernel, loopback TCP and the load generator allow, with no lookup, no cache and no runtime.
//!
//! ```sh
//! socketmap-floor --addr 127.0.0.1:8463
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use mta_sts_benches::socketmap::{decode, encode, enforce_reply};

fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let (mut pos, mut filled) = (0usize, 0usize);
    loop {
        match s.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        out.clear();
        loop {
            match decode(&buf[pos..filled]) {
                Ok(Some((request, consumed))) => {
                    let key = request
                        .iter()
                        .position(|&b| b == b' ')
                        .map_or(&[][..], |i| &request[i + 1..]);
                    encode(
                        &mut out,
                        enforce_reply(&String::from_utf8_lossy(key)).as_bytes(),
                    );
                    pos += consumed;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        pos = 0;
        if filled == buf.len() {
            return; // a request longer than the buffer: not a socketmap client
        }
        if !out.is_empty() && s.write_all(&out).is_err() {
            return;
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some("--addr"), Some(addr)) = (args.next().as_deref(), args.next()) else {
        eprintln!("usage: socketmap-floor --addr HOST:PORT");
        return ExitCode::from(2);
    };
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("socketmap-floor: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || serve(conn));
    }
    ExitCode::SUCCESS
}
