//! The TPM factor against a real software TPM (swtpm): each test starts its
//! own instance, so TPM seeds and PCRs are never shared between tests.

#[path = "common/swtpm.rs"]
mod swtpm;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use swtpm::Swtpm;
use vaultfs::crypto::Key32;
use vaultfs::gate::tpm::{self, Error, SealedBlob, TpmConfig};

fn cfg(tpm: &Swtpm, pcrs: &[u8]) -> TpmConfig {
    TpmConfig::resolve(Some(&tpm.tcti()), pcrs.to_vec())
}

/// Two loopback listeners on ports P and P + 1 (the swtpm TCTI's pair).
fn listener_pair() -> (TcpListener, TcpListener) {
    (0..100)
        .find_map(|_| {
            let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let p = a.local_addr().unwrap().port();
            let b = TcpListener::bind((Ipv4Addr::LOCALHOST, p.checked_add(1)?)).ok()?;
            Some((a, b))
        })
        .expect("a free loopback port pair")
}

/// A TCP relay in front of a swtpm that records every byte sent either way,
/// i.e. what someone listening on the TPM bus would see.
struct Tap {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    fn new(target: &Swtpm) -> Tap {
        let (command, control) = listener_pair();
        let port = command.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for (listener, dest) in [(command, target.port()), (control, target.port() + 1)] {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    let server = TcpStream::connect((Ipv4Addr::LOCALHOST, dest)).unwrap();
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let seen2 = seen.clone();
                    std::thread::spawn(move || pump(client, server, &seen2));
                    let seen2 = seen.clone();
                    std::thread::spawn(move || pump(s2, c2, &seen2));
                }
            });
        }
        Tap { port, seen }
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Whether any 8 consecutive bytes of `needle` crossed the wire.
    fn saw_any_part_of(&self, needle: &[u8]) -> bool {
        let seen = self.seen.lock().unwrap();
        needle.windows(8).any(|w| seen.windows(8).any(|s| s == w))
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, seen: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[test]
fn seal_then_unseal_round_trips_the_secret() {
    let tpm = Swtpm::start();
    let cfg = cfg(&tpm, &[]);
    tpm::probe(&cfg).unwrap();
    let secret = Key32::random().unwrap();
    let blob = tpm::seal(&cfg, &secret).unwrap();
    assert!(blob.pcrs().is_empty());
    // What a vault header stores survives a round trip through bytes.
    let blob = SealedBlob::from_bytes(&blob.to_bytes()).unwrap();
    for _ in 0..3 {
        assert_eq!(tpm::unseal(&cfg, &blob).unwrap().as_bytes(), secret.as_bytes());
    }
    // Two seals of the same secret are different blobs (fresh seed per object).
    let again = tpm::seal(&cfg, &secret).unwrap();
    assert_ne!(again.to_bytes(), blob.to_bytes());
    assert_eq!(tpm::unseal(&cfg, &again).unwrap().as_bytes(), secret.as_bytes());
}

#[test]
fn the_secret_never_crosses_the_tpm_interface_in_the_clear() {
    let tpm = Swtpm::start();
    let tap = Tap::new(&tpm);
    let secret = Key32::random().unwrap();
    for pcrs in [&[][..], &[7, 16]] {
        let cfg = TpmConfig::resolve(Some(&tap.tcti()), pcrs.to_vec());
        let blob = tpm::seal(&cfg, &secret).unwrap();
        assert_eq!(tpm::unseal(&cfg, &blob).unwrap().as_bytes(), secret.as_bytes());
    }
    assert!(!tap.saw_any_part_of(secret.as_bytes()), "secret bytes seen on the wire");
    // Control: the tap does see parameters that are sent in the clear.
    let cfg = TpmConfig::resolve(Some(&tap.tcti()), vec![]);
    tpm::extend_pcr(&cfg, 16, b"visible").unwrap();
    assert!(tap.saw_any_part_of(&vaultfs::crypto::sha256(b"visible")));
}

#[test]
fn no_handles_leak_across_many_operations() {
    // swtpm has no resource manager and room for only a few transient
    // objects and sessions: a leaked handle per call fails well before 40.
    let tpm = Swtpm::start();
    let plain = cfg(&tpm, &[]);
    let bound = cfg(&tpm, &[16]);
    let secret = Key32::random().unwrap();
    let b1 = tpm::seal(&plain, &secret).unwrap();
    let b2 = tpm::seal(&bound, &secret).unwrap();
    let foreign = {
        let other = Swtpm::start();
        tpm::seal(&cfg(&other, &[]), &secret).unwrap()
    };
    for i in 0..40 {
        assert_eq!(tpm::unseal(&plain, &b1).unwrap().as_bytes(), secret.as_bytes(), "round {i}");
        assert_eq!(tpm::unseal(&bound, &b2).unwrap().as_bytes(), secret.as_bytes(), "round {i}");
        // Error paths must flush too.
        assert_eq!(tpm::unseal(&plain, &foreign).unwrap_err(), Error::ForeignBlob, "round {i}");
    }
    tpm::extend_pcr(&plain, 16, b"lock").unwrap();
    for i in 0..40 {
        assert!(matches!(tpm::unseal(&bound, &b2), Err(Error::PcrMismatch { .. })), "round {i}");
    }
    tpm::probe(&plain).unwrap();
}

#[test]
fn a_blob_from_another_tpm_is_refused_clearly() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let secret = Key32::random().unwrap();
    for pcrs in [&[][..], &[7, 16]] {
        let blob = tpm::seal(&cfg(&a, pcrs), &secret).unwrap();
        let err = tpm::unseal(&cfg(&b, pcrs), &blob).unwrap_err();
        assert_eq!(err, Error::ForeignBlob);
        let msg = err.to_string();
        assert!(msg.contains("another TPM") && msg.contains("re-enroll"), "{msg}");
        // The right TPM still unseals it.
        assert_eq!(tpm::unseal(&cfg(&a, pcrs), &blob).unwrap().as_bytes(), secret.as_bytes());
    }
}

#[test]
fn pcr_bound_seal_fails_once_a_pcr_changes() {
    let tpm = Swtpm::start();
    let cfg = cfg(&tpm, &[16, 7]);
    let secret = Key32::random().unwrap();
    let blob = tpm::seal(&cfg, &secret).unwrap();
    assert_eq!(blob.pcrs(), [7, 16]);
    let blob = SealedBlob::from_bytes(&blob.to_bytes()).unwrap();
    assert_eq!(tpm::unseal(&cfg, &blob).unwrap().as_bytes(), secret.as_bytes());

    // A PCR outside the selection does not matter.
    tpm::extend_pcr(&cfg, 8, b"unrelated").unwrap();
    assert_eq!(tpm::unseal(&cfg, &blob).unwrap().as_bytes(), secret.as_bytes());

    tpm::extend_pcr(&cfg, 16, b"something else booted").unwrap();
    let err = tpm::unseal(&cfg, &blob).unwrap_err();
    assert_eq!(err, Error::PcrMismatch { pcrs: vec![7, 16] });
    let msg = err.to_string();
    assert!(msg.contains("the PCRs 7,16 changed since enrollment"), "{msg}");

    // Sealing again binds to the new values.
    let blob2 = tpm::seal(&cfg, &secret).unwrap();
    assert_eq!(tpm::unseal(&cfg, &blob2).unwrap().as_bytes(), secret.as_bytes());
    // An unbound seal is unaffected by PCRs.
    let plain = TpmConfig { pcrs: vec![], ..cfg.clone() };
    let blob3 = tpm::seal(&plain, &secret).unwrap();
    tpm::extend_pcr(&cfg, 7, b"x").unwrap();
    assert_eq!(tpm::unseal(&plain, &blob3).unwrap().as_bytes(), secret.as_bytes());
    assert!(matches!(tpm::unseal(&cfg, &blob2), Err(Error::PcrMismatch { .. })));
}

#[test]
fn bad_pcr_indices_are_refused() {
    let tpm = Swtpm::start();
    let secret = Key32::random().unwrap();
    assert_eq!(tpm::seal(&cfg(&tpm, &[7, 24]), &secret).unwrap_err(), Error::BadPcr(24));
    assert_eq!(tpm::extend_pcr(&cfg(&tpm, &[]), 200, b"x").unwrap_err(), Error::BadPcr(200));
}

/// Asserts `r` is `Unreachable` naming `tcti`, and took under 5 s.
fn assert_unreachable<T: std::fmt::Debug>(tcti: &str, started: Instant, r: Result<T, Error>) {
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    match r {
        Err(e @ Error::Unreachable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("{tcti:?}")), "{msg}");
            assert!(msg.contains("I/O error"), "{msg}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[test]
fn a_stopped_tpm_is_unreachable_quickly() {
    let mut tpm = Swtpm::start();
    let cfg = cfg(&tpm, &[]);
    let secret = Key32::random().unwrap();
    let blob = tpm::seal(&cfg, &secret).unwrap();
    tpm.stop();
    let t = Instant::now();
    assert_unreachable(&cfg.tcti, t, tpm::probe(&cfg));
    let t = Instant::now();
    assert_unreachable(&cfg.tcti, t, tpm::unseal(&cfg, &blob));
    let t = Instant::now();
    assert_unreachable(&cfg.tcti, t, tpm::seal(&cfg, &secret));
}

#[test]
fn a_port_nothing_listens_on_is_unreachable_quickly() {
    let port = {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    for tcti in [format!("swtpm:host=127.0.0.1,port={port}"), format!("mssim:host=127.0.0.1,port={port}")] {
        let cfg = TpmConfig::resolve(Some(&tcti), vec![]);
        let t = Instant::now();
        assert_unreachable(&tcti, t, tpm::probe(&cfg));
    }
    let tcti = "device:/nonexistent/tpmrm0";
    let t = Instant::now();
    assert_unreachable(tcti, t, tpm::probe(&TpmConfig::resolve(Some(tcti), vec![])));
}

#[test]
fn a_peer_that_never_answers_times_out_as_unreachable() {
    // Accepts connections (the TSS connects fine) but never replies: the TSS
    // itself would wait forever for the response.
    // The swtpm TCTI connects to the command port P and the control port P + 1.
    let (silent, control) = listener_pair();
    let port = silent.local_addr().unwrap().port();
    for listener in [silent, control] {
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                held.push(conn);
            }
        });
    }
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let mut cfg = TpmConfig::resolve(Some(&tcti), vec![]);
    cfg.timeout = Duration::from_millis(500);
    let t = Instant::now();
    let err = tpm::probe(&cfg).unwrap_err();
    let elapsed = t.elapsed();
    let msg = err.to_string();
    assert!(elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3), "{elapsed:?}: {msg}");
    assert!(
        matches!(err, Error::Unreachable { .. }) && msg.contains(&tcti) && msg.contains("no answer"),
        "{msg}"
    );
}

#[test]
fn garbage_blobs_are_malformed() {
    let tpm = Swtpm::start();
    let cfg = cfg(&tpm, &[7]);
    let blob = tpm::seal(&cfg, &Key32::random().unwrap()).unwrap().to_bytes();
    for len in 0..blob.len() {
        assert!(
            matches!(SealedBlob::from_bytes(&blob[..len]), Err(Error::Malformed(_))),
            "truncated to {len}"
        );
    }
    for bad in [&b""[..], b"\x00", b"\x01", b"\x02\x00", b"\x01\x00\x00\x00", b"\x01\x19"] {
        assert!(matches!(SealedBlob::from_bytes(bad), Err(Error::Malformed(_))), "{bad:?}");
    }
    let mut long = blob.clone();
    long.push(0);
    assert!(matches!(SealedBlob::from_bytes(&long), Err(Error::Malformed(_))));

    // A blob pinned to another primary key is refused before anything is unsealed.
    let mut repinned = blob.clone();
    repinned[1] ^= 1;
    let repinned = SealedBlob::from_bytes(&repinned).unwrap();
    assert_eq!(tpm::unseal(&cfg, &repinned).unwrap_err(), Error::ForeignBlob);

    // A well-formed blob whose private area was tampered with: the TPM refuses it.
    let mut tampered = blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = SealedBlob::from_bytes(&tampered).unwrap();
    assert_eq!(tpm::unseal(&cfg, &tampered).unwrap_err(), Error::ForeignBlob);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = SealedBlob::from_bytes(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        pcrs in prop::collection::btree_set(0u8..24, 0..4),
        public in prop::collection::vec(any::<u8>(), 0..200),
        private in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut b = vec![1];
        b.extend([0x42; 32]); // primary key fingerprint
        b.push(pcrs.len() as u8);
        b.extend(pcrs.iter());
        b.extend((public.len() as u16).to_be_bytes());
        // A plausible TPMT_PUBLIC start (KEYEDHASH, SHA-256) half the time.
        let mut public = public;
        if public.len() >= 4 && public[0] & 1 == 0 {
            public[..4].copy_from_slice(&[0, 8, 0, 11]);
        }
        b.extend(&public);
        b.extend((private.len() as u16).to_be_bytes());
        b.extend(&private);
        if let Err(e) = SealedBlob::from_bytes(&b) {
            prop_assert!(matches!(e, Error::Malformed(_)), "{e:?}");
        }
    }
}

/// The NV rollback anchor: absent until written, read back only with the
/// vault's authorization value (the TPM refuses another), overwritten in
/// place, and removable.
#[test]
fn the_nv_anchor_answers_only_to_its_authorization() {
    use vaultfs::gate::tpm::{ANCHOR_SIZE, NvAnchor, anchor_index, read_anchor, remove_anchor, write_anchor};
    let tpm = Swtpm::start();
    let c = cfg(&tpm, &[]);
    let index = anchor_index(&[7u8; 16]);
    assert_eq!(index & 0xFFC0_0000, 0x0180_0000, "an owner-range NV index");
    assert_ne!(index, anchor_index(&[8u8; 16]));
    let auth = Key32::random().unwrap();
    assert_eq!(read_anchor(&c, index, &auth).unwrap(), NvAnchor::Missing);
    let first = vec![1u8; ANCHOR_SIZE as usize];
    write_anchor(&c, index, &auth, first.clone()).unwrap();
    assert_eq!(read_anchor(&c, index, &auth).unwrap(), NvAnchor::Found(first));
    let second = vec![2u8; ANCHOR_SIZE as usize];
    write_anchor(&c, index, &auth, second.clone()).unwrap();
    assert_eq!(read_anchor(&c, index, &auth).unwrap(), NvAnchor::Found(second.clone()));
    // Another key neither reads nor writes it.
    let other = Key32::random().unwrap();
    assert!(matches!(read_anchor(&c, index, &other).unwrap(), NvAnchor::Foreign(_)));
    assert!(write_anchor(&c, index, &other, vec![3u8; ANCHOR_SIZE as usize]).is_err());
    assert_eq!(read_anchor(&c, index, &auth).unwrap(), NvAnchor::Found(second));
    assert!(write_anchor(&c, index, &auth, vec![0u8; 3]).is_err(), "wrong size refused");
    remove_anchor(&c, index).unwrap();
    assert_eq!(read_anchor(&c, index, &auth).unwrap(), NvAnchor::Missing);
}
