//! `payd probe`: one `GET` to a payd process on this host, for a container's health check.
//!
//! The image is distroless (no shell, no curl), so the binary checks itself. Plain
//! blocking HTTP/1.0 over std's TCP: one request, the status line read, nothing else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::args::ProbeArgs;

/// Whether the process at `args.address` answered `GET args.path` with 200, in time.
pub(crate) fn probe(args: &ProbeArgs) -> Result<(), String> {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let mut stream = TcpStream::connect_timeout(&args.address, timeout)
        .map_err(|error| format!("connecting to {}: {error}", args.address))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|error| error.to_string())?;
    write!(
        stream,
        "GET {} HTTP/1.0\r\nHost: {}\r\n\r\n",
        args.path, args.address
    )
    .map_err(|error| format!("sending the request: {error}"))?;
    // The status line fits in the first bytes ("HTTP/1.1 200 OK").
    let mut head = [0_u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) => return Err(format!("reading the answer: {error}")),
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(status) => Err(format!("{} answered {status}", args.path)),
        None => Err(format!("no HTTP answer from {}", args.address)),
    }
}
