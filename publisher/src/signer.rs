//! The external signer protocol (docs/external-signer.md): online keys held
//! by an HSM or KMS sign through a program, so their secrets never touch
//! the publishing machine's disk.
//!
//! `PROGRAM sign ROLE KEYID` runs without a shell; its stdin is the exact
//! message to sign (the DSSE PAE of a head or manifest, SPEC.md §4.0.1),
//! closed after the last byte; it prints the 64-byte ed25519 signature as
//! 128 hex digits (one optional trailing newline) and exits 0. Anything
//! else, or no answer within the timeout, is an error naming the program;
//! the caller checks the signature against the public key before use.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use consentry::docs::Role;

/// How much of the signer's stdout and stderr is read: a signature is 129
/// bytes; a program printing more is not speaking the protocol.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Ask `program` to sign `msg` with the key `keyid` of `role`.
pub fn run(
    program: &Path,
    role: Role,
    keyid: &[u8; 32],
    msg: &[u8],
    timeout: Duration,
) -> Result<[u8; 64]> {
    let id = hex::encode(keyid);
    let who = || {
        format!(
            "external signer {} ({} key {id})",
            program.display(),
            role.name()
        )
    };
    let mut child = Command::new(program)
        .args(["sign", role.name(), &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            crate::advise!(
                "cannot run the {}: {}",
                "--signer takes the path of an executable that speaks docs/external-signer.md",
                who(),
                e
            )
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(anyhow!("{}: its pipes could not be opened", who()));
    };
    let body = msg.to_vec();
    // Feed and drain on threads: a signer that reads nothing or writes a lot
    // cannot block the publisher past the timeout.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let drain = |r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = r.take(MAX_OUTPUT).read_to_end(&mut out);
            out
        })
    };
    let out = drain(Box::new(stdout));
    let err = drain(Box::new(stderr));
    let start = Instant::now();
    // Polled every 10 ms: bounded by the timeout.
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err);
    let err = err.trim();
    let Some(status) = status else {
        return Err(crate::advise!(
            "the {} did not answer within {} s",
            "check that the HSM or KMS is reachable, or allow longer with --signer-timeout",
            who(),
            timeout.as_secs()
        ));
    };
    if !status.success() {
        return Err(crate::advise!(
            "the {} failed ({}){}",
            "run it by hand: echo test | PROGRAM sign ROLE KEYID",
            who(),
            status,
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        ));
    }
    let text = String::from_utf8_lossy(&out);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    hex::decode(text)
        .ok()
        .and_then(|v| <[u8; 64]>::try_from(v).ok())
        .ok_or_else(|| {
            crate::advise!(
                "the {} printed {} bytes that are not a signature",
                "the protocol wants the 64-byte signature as 128 hex digits and at most one newline on stdout",
                who(),
                out.len()
            )
        })
}
