use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

use super::*;

const RP: &str = "vaultfs:level-5";
const SALT: [u8; 32] = [0x5a; 32];

fn touched() -> SoftAuthenticator {
    SoftAuthenticator::in_memory(Box::new(|| true)).unwrap()
}

fn ask(
    dev: &SoftAuthenticator,
    rp_id: &str,
    ids: &[Vec<u8>],
    salt: &[u8; 32],
    pin: Option<&str>,
) -> Result<(usize, [u8; 32]), Error> {
    let req = AssertionRequest { rp_id, credentials: ids, salt, pin, uv: false, up: true };
    dev.hmac_secret(&req).map(|(i, k)| (i, *k.as_bytes()))
}

fn output(dev: &SoftAuthenticator, cred: &Credential, salt: &[u8; 32], pin: Option<&str>) -> [u8; 32] {
    ask(dev, &cred.rp_id, std::slice::from_ref(&cred.id), salt, pin).unwrap().1
}

fn state_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soft.state");
    (dir, path)
}

/// A file-backed device that never waits for a touch.
fn file_device(path: &Path) -> SoftAuthenticator {
    let dev = SoftAuthenticator::open(path).unwrap();
    dev.set_presence(PresenceMode::Always, Duration::from_secs(1)).unwrap();
    dev
}

// ---- hmac-secret outputs ----

#[test]
fn output_is_hmac_of_the_credrandom_chosen_by_uv() {
    let dev = touched();
    dev.set_pin("1234").unwrap();
    let cred = dev.make_credential(RP, None, true).unwrap();
    assert_eq!(cred.id.len(), CREDENTIAL_ID_LEN);
    let vol = dev.lock();
    let inner = unwrap_credential(vol.memory.as_ref().unwrap(), RP, &cred.id).unwrap();
    let (without_uv, with_uv) = (
        crypto::hmac_sha256(inner.cred_random.as_bytes(), &SALT),
        crypto::hmac_sha256(inner.cred_random_uv.as_bytes(), &SALT),
    );
    assert_eq!(inner.flags, FLAG_UP);
    drop(vol);
    assert_eq!(output(&dev, &cred, &SALT, None), without_uv);
    assert_eq!(output(&dev, &cred, &SALT, Some("1234")), with_uv);
}

#[test]
fn output_is_deterministic_per_credential_salt_and_uv() {
    let dev = touched();
    dev.set_pin("1234").unwrap();
    let cred = dev.make_credential(RP, Some("1234"), true).unwrap();
    assert!(cred.uv && cred.up);
    let a = output(&dev, &cred, &SALT, Some("1234"));
    assert_eq!(a, output(&dev, &cred, &SALT, Some("1234")));
    let plain = dev.make_credential(RP, None, false).unwrap();
    assert_eq!(output(&dev, &plain, &SALT, None), output(&dev, &plain, &SALT, None));
}

#[test]
fn outputs_differ_across_salts_credentials_uv_and_rp_ids() {
    let dev = touched();
    dev.set_pin("1234").unwrap();
    let c1 = dev.make_credential(RP, None, true).unwrap();
    let c2 = dev.make_credential(RP, None, true).unwrap();
    let other_rp = dev.make_credential("vaultfs:level-4", None, true).unwrap();
    let base = output(&dev, &c1, &SALT, None);
    assert_ne!(base, output(&dev, &c1, &[0x5b; 32], None), "salt");
    assert_ne!(base, output(&dev, &c2, &SALT, None), "credential");
    assert_ne!(base, output(&dev, &c1, &SALT, Some("1234")), "uv");
    assert_ne!(base, output(&dev, &other_rp, &SALT, None), "rp id");
    assert_ne!(c1.id, c2.id);
}

#[test]
fn credential_is_bound_to_its_rp_id() {
    let dev = touched();
    let cred = dev.make_credential(RP, None, true).unwrap();
    assert_eq!(ask(&dev, "vaultfs:level-4", &[cred.id], &SALT, None), Err(Error::NoCredential));
}

#[test]
fn credential_from_another_device_is_not_found() {
    let (a, b) = (touched(), touched());
    let cred = a.make_credential(RP, None, true).unwrap();
    assert_eq!(ask(&b, RP, &[cred.id], &SALT, None), Err(Error::NoCredential));
}

#[test]
fn tampered_credential_id_is_not_found() {
    let dev = touched();
    let cred = dev.make_credential(RP, None, true).unwrap();
    for i in 0..cred.id.len() {
        let mut id = cred.id.clone();
        id[i] ^= 0x01;
        assert_eq!(ask(&dev, RP, &[id], &SALT, None), Err(Error::NoCredential), "byte {i}");
    }
    let mut longer = cred.id.clone();
    longer.push(0);
    assert_eq!(ask(&dev, RP, &[longer], &SALT, None), Err(Error::NoCredential));
    assert_eq!(
        ask(&dev, RP, &[cred.id[..cred.id.len() - 1].to_vec()], &SALT, None),
        Err(Error::NoCredential)
    );
    assert_eq!(ask(&dev, RP, &[], &SALT, None), Err(Error::NoCredential));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_are_never_a_credential(id in proptest::collection::vec(any::<u8>(), 0..160)) {
        let dev = touched();
        prop_assert_eq!(ask(&dev, RP, &[id], &SALT, None), Err(Error::NoCredential));
    }

    #[test]
    fn a_changed_credential_is_never_found(at in 0usize..CREDENTIAL_ID_LEN, flip in 1u8..=255) {
        let dev = touched();
        let cred = dev.make_credential(RP, None, true).unwrap();
        let mut id = cred.id.clone();
        id[at] ^= flip;
        prop_assert_eq!(ask(&dev, RP, &[id], &SALT, None), Err(Error::NoCredential));
    }
}

// ---- allow list ----

#[test]
fn allow_list_backup_key_answers_with_its_index() {
    let (main, backup) = (touched(), touched());
    let on_main = main.make_credential(RP, None, true).unwrap();
    let on_backup = backup.make_credential(RP, None, true).unwrap();
    let allow = [on_main.id.clone(), on_backup.id.clone()];
    let (i, out) = ask(&main, RP, &allow, &SALT, None).unwrap();
    assert_eq!((i, out), (0, output(&main, &on_main, &SALT, None)));
    let (i, out) = ask(&backup, RP, &allow, &SALT, None).unwrap();
    assert_eq!((i, out), (1, output(&backup, &on_backup, &SALT, None)));
    // A foreign or garbage entry before ours is skipped.
    let allow = [vec![0u8; 7], on_backup.id.clone(), on_main.id.clone()];
    assert_eq!(ask(&main, RP, &allow, &SALT, None).unwrap().0, 2);
}

// ---- PIN ----

#[test]
fn wrong_pin_decrements_retries_and_success_resets() {
    let dev = touched();
    dev.set_pin("1234").unwrap();
    let cred = dev.make_credential(RP, Some("1234"), true).unwrap();
    assert_eq!(dev.pin_retries().unwrap(), 8);
    assert_eq!(
        ask(&dev, RP, std::slice::from_ref(&cred.id), &SALT, Some("0000")),
        Err(Error::PinInvalid { retries_left: 7 })
    );
    assert_eq!(
        ask(&dev, RP, std::slice::from_ref(&cred.id), &SALT, Some("0000")),
        Err(Error::PinInvalid { retries_left: 6 })
    );
    assert_eq!(dev.pin_retries().unwrap(), 6);
    ask(&dev, RP, std::slice::from_ref(&cred.id), &SALT, Some("1234")).unwrap();
    assert_eq!(dev.pin_retries().unwrap(), 8);
    // After the reset, three more wrong ones are needed for a power-cycle block.
    assert_eq!(
        ask(&dev, RP, std::slice::from_ref(&cred.id), &SALT, Some("0000")),
        Err(Error::PinInvalid { retries_left: 7 })
    );
}

#[test]
fn three_wrong_pins_block_until_power_cycle() {
    let dev = touched();
    dev.set_pin("1234").unwrap();
    let ids = [dev.make_credential(RP, Some("1234"), true).unwrap().id];
    let pin = |p| ask(&dev, RP, &ids, &SALT, Some(p));
    assert_eq!(pin("0000"), Err(Error::PinInvalid { retries_left: 7 }));
    assert_eq!(pin("0000"), Err(Error::PinInvalid { retries_left: 6 }));
    assert_eq!(pin("0000"), Err(Error::PinAuthBlocked));
    // Even the right PIN is refused now, and nothing is counted.
    assert_eq!(pin("1234"), Err(Error::PinAuthBlocked));
    assert_eq!(dev.pin_retries().unwrap(), 5);
    dev.power_cycle();
    assert!(pin("1234").is_ok());
    assert_eq!(dev.pin_retries().unwrap(), 8);
}

#[test]
fn three_wrong_pins_block_a_file_device_until_reopened() {
    let (_dir, path) = state_file();
    let dev = file_device(&path);
    dev.set_pin("1234").unwrap();
    let ids = [dev.make_credential(RP, Some("1234"), true).unwrap().id];
    for _ in 0..2 {
        assert!(matches!(ask(&dev, RP, &ids, &SALT, Some("0000")), Err(Error::PinInvalid { .. })));
    }
    assert_eq!(ask(&dev, RP, &ids, &SALT, Some("0000")), Err(Error::PinAuthBlocked));
    assert_eq!(ask(&dev, RP, &ids, &SALT, Some("1234")), Err(Error::PinAuthBlocked));
    drop(dev);
    // Reopening is a power cycle; the retry counter persisted.
    let dev = SoftAuthenticator::open(&path).unwrap();
    assert_eq!(dev.pin_retries().unwrap(), 5);
    assert!(ask(&dev, RP, &ids, &SALT, Some("1234")).is_ok());
    assert_eq!(SoftAuthenticator::open(&path).unwrap().pin_retries().unwrap(), 8);
}

#[test]
fn eight_wrong_pins_block_the_pin_for_good() {
    let (_dir, path) = state_file();
    let dev = file_device(&path);
    dev.set_pin("1234").unwrap();
    let ids = [dev.make_credential(RP, Some("1234"), true).unwrap().id];
    let mut results = Vec::new();
    let mut dev = dev;
    for n in 1..=8u8 {
        results.push(ask(&dev, RP, &ids, &SALT, Some("0000")));
        if n % 3 == 0 {
            dev = SoftAuthenticator::open(&path).unwrap();
        }
    }
    let expected = [
        Err(Error::PinInvalid { retries_left: 7 }),
        Err(Error::PinInvalid { retries_left: 6 }),
        Err(Error::PinAuthBlocked),
        Err(Error::PinInvalid { retries_left: 4 }),
        Err(Error::PinInvalid { retries_left: 3 }),
        Err(Error::PinAuthBlocked),
        Err(Error::PinInvalid { retries_left: 1 }),
        Err(Error::PinBlocked),
    ];
    assert_eq!(results, expected);
    assert_eq!(ask(&dev, RP, &ids, &SALT, Some("1234")), Err(Error::PinBlocked));
    let dev = SoftAuthenticator::open(&path).unwrap();
    assert_eq!(ask(&dev, RP, &ids, &SALT, Some("1234")), Err(Error::PinBlocked));
    assert_eq!(dev.make_credential(RP, Some("1234"), true), Err(Error::PinBlocked));
    assert_eq!(dev.pin_retries().unwrap(), 0);
}

#[test]
fn uv_credential_without_pin_is_pin_required() {
    let dev = touched();
    dev.set_pin("1234").unwrap();
    let cred = dev.make_credential(RP, Some("1234"), true).unwrap();
    // The sealed flag decides, whatever the request claims.
    assert_eq!(ask(&dev, RP, std::slice::from_ref(&cred.id), &SALT, None), Err(Error::PinRequired));
    // A request that says uv needs a PIN even for a credential made without one.
    let plain = dev.make_credential(RP, None, true).unwrap();
    let req =
        AssertionRequest { rp_id: RP, credentials: &[plain.id], salt: &SALT, pin: None, uv: true, up: true };
    assert_eq!(dev.hmac_secret(&req).map(|(i, _)| i), Err(Error::PinRequired));
}

#[test]
fn pin_rules() {
    let dev = touched();
    let cred = dev.make_credential(RP, None, true).unwrap();
    assert_eq!(dev.make_credential(RP, Some("1234"), true), Err(Error::PinNotSet));
    assert_eq!(ask(&dev, RP, &[cred.id], &SALT, Some("1234")), Err(Error::PinNotSet));
    assert!(matches!(dev.set_pin("123"), Err(Error::PinPolicy(_))));
    assert!(matches!(dev.set_pin(&"x".repeat(64)), Err(Error::PinPolicy(_))));
    dev.set_pin("1234").unwrap();
    assert!(matches!(dev.set_pin("5678"), Err(Error::PinPolicy(_))));
    assert_eq!(dev.make_credential(RP, Some("4321"), true), Err(Error::PinInvalid { retries_left: 7 }));
}

// ---- presence ----

#[test]
fn presence_denied_is_reported() {
    let dev = SoftAuthenticator::in_memory(Box::new(|| false)).unwrap();
    assert_eq!(dev.make_credential(RP, None, false), Err(Error::PresenceDenied));
    let (_dir, path) = state_file();
    let dev = SoftAuthenticator::open(&path).unwrap();
    dev.set_presence(PresenceMode::Always, Duration::ZERO).unwrap();
    let cred = dev.make_credential(RP, None, true).unwrap();
    dev.set_presence(PresenceMode::Never, Duration::ZERO).unwrap();
    assert_eq!(ask(&dev, RP, &[cred.id], &SALT, None), Err(Error::PresenceDenied));
}

#[test]
fn presence_is_tested_only_when_asked_for() {
    let touches = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&touches);
    let dev = SoftAuthenticator::in_memory(Box::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
        true
    }))
    .unwrap();
    let silent = dev.make_credential(RP, None, false).unwrap();
    let touchy = dev.make_credential(RP, None, true).unwrap();
    assert_eq!(touches.load(Ordering::SeqCst), 2, "makeCredential always tests presence");
    let req =
        |ids, up| AssertionRequest { rp_id: RP, credentials: ids, salt: &SALT, pin: None, uv: false, up };
    dev.hmac_secret(&req(std::slice::from_ref(&silent.id), false)).unwrap();
    assert_eq!(touches.load(Ordering::SeqCst), 2);
    dev.hmac_secret(&req(std::slice::from_ref(&silent.id), true)).unwrap();
    assert_eq!(touches.load(Ordering::SeqCst), 3);
    // A credential made with up needs a touch even if the request says no.
    dev.hmac_secret(&req(std::slice::from_ref(&touchy.id), false)).unwrap();
    assert_eq!(touches.load(Ordering::SeqCst), 4);
}

#[test]
fn file_device_waits_for_the_touch_file_and_consumes_it() {
    let (_dir, path) = state_file();
    let dev = SoftAuthenticator::open(&path).unwrap();
    dev.set_presence(PresenceMode::Touch, Duration::from_secs(10)).unwrap();
    let touch = dev.touch_path().unwrap();
    assert_eq!(touch, path.with_file_name("soft.state.touch"));
    // A touch already there is taken at once.
    fs::write(&touch, b"").unwrap();
    let cred = dev.make_credential(RP, None, true).unwrap();
    assert!(!touch.exists(), "the touch is consumed");
    let toucher = {
        let touch = touch.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            fs::write(&touch, b"").unwrap();
        })
    };
    let start = Instant::now();
    ask(&dev, RP, &[cred.id], &SALT, None).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "answered before the touch: {:?}",
        start.elapsed()
    );
    toucher.join().unwrap();
    assert!(!touch.exists());
}

#[test]
fn file_device_times_out_without_a_touch() {
    let (_dir, path) = state_file();
    let dev = SoftAuthenticator::open(&path).unwrap();
    dev.set_presence(PresenceMode::Touch, Duration::from_millis(200)).unwrap();
    let start = Instant::now();
    assert_eq!(dev.make_credential(RP, None, true), Err(Error::PresenceTimeout));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn a_new_state_file_waits_30_s_for_a_touch() {
    let (_dir, path) = state_file();
    SoftAuthenticator::open(&path).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("\npresence touch\n") && text.contains("\ntouch-timeout-ms 30000\n"), "{text}");
    let in_memory = touched();
    assert!(in_memory.set_presence(PresenceMode::Always, Duration::ZERO).is_err());
}

// ---- state file ----

#[test]
fn state_persists_across_reopen_and_processes_share_it() {
    let (_dir, path) = state_file();
    let dev = file_device(&path);
    dev.set_pin("1234").unwrap();
    let cred = dev.make_credential(RP, Some("1234"), true).unwrap();
    let first = output(&dev, &cred, &SALT, Some("1234"));
    // A second handle (another process) sees the same device and PIN counter.
    let other = SoftAuthenticator::open(&path).unwrap();
    assert_eq!(output(&other, &cred, &SALT, Some("1234")), first);
    assert!(matches!(
        ask(&other, RP, std::slice::from_ref(&cred.id), &SALT, Some("9999")),
        Err(Error::PinInvalid { .. })
    ));
    assert_eq!(dev.pin_retries().unwrap(), 7);
    drop((dev, other));
    let again = SoftAuthenticator::open(&path).unwrap();
    assert_eq!(output(&again, &cred, &SALT, Some("1234")), first);
}

#[test]
fn state_file_is_private_and_left_without_temporaries() {
    let (dir, path) = state_file();
    let dev = file_device(&path);
    dev.set_pin("1234").unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [OsString::from("soft.state")]);
}

#[test]
fn state_round_trips() {
    let state = State::fresh().unwrap();
    let back = State::decode(&state.encode()).unwrap();
    assert_eq!(back.secret.as_bytes(), state.secret.as_bytes());
    assert_eq!((back.pin_hash, back.retries, back.presence), (None, 8, PresenceMode::Touch));
    assert_eq!(back.touch_timeout, DEFAULT_TOUCH_TIMEOUT);
}

#[test]
fn corrupted_state_file_is_a_clear_error() {
    let (_dir, path) = state_file();
    SoftAuthenticator::open(&path).unwrap();
    let good = fs::read_to_string(&path).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "not a software authenticator state file"),
        ("garbage\n".into(), "not a software authenticator state file"),
        (good.replacen("secret ", "secret zz", 1), "secret is not 64 hex digits"),
        (good.replace("pin-retries 8", "pin-retries 9"), "pin-retries must be 0 to 8"),
        (good.replace("presence touch", "presence maybe"), "presence must be touch"),
        (good.replace("touch-timeout-ms 30000", "touch-timeout-ms 99999999999"), "touch-timeout-ms must be"),
        (good.replace("pin-hash none\n", ""), "pin-hash is missing"),
        (format!("{good}pin-retries 8\n"), "pin-retries given twice"),
        (format!("{good}colour blue\n"), "unknown key"),
        (format!("{good}oops\n"), "expected `key value`"),
        (good[..40].to_owned(), "secret is not 64 hex digits"),
        (good.lines().take(3).map(|l| format!("{l}\n")).collect(), "pin-retries is missing"),
        ("x".repeat(5000), "larger than 4096 bytes"),
    ];
    for (text, want) in cases {
        fs::write(&path, &text).unwrap();
        let err = SoftAuthenticator::open(&path).err().unwrap();
        assert!(matches!(&err, Error::State { path: p, .. } if *p == path), "{err}");
        assert!(err.to_string().contains(want), "{err} lacks {want:?}");
    }
    fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    assert!(SoftAuthenticator::open(&path).err().unwrap().to_string().contains("not UTF-8"));
}

#[test]
fn a_state_file_damaged_while_open_fails_the_next_request() {
    let (_dir, path) = state_file();
    let dev = file_device(&path);
    let cred = dev.make_credential(RP, None, true).unwrap();
    fs::write(&path, "vaultfs-soft-fido2 1\n").unwrap();
    assert!(matches!(ask(&dev, RP, std::slice::from_ref(&cred.id), &SALT, None), Err(Error::State { .. })));
    fs::remove_file(&path).unwrap();
    let err = ask(&dev, RP, &[cred.id], &SALT, None).unwrap_err();
    assert!(err.to_string().contains("disappeared"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_state_text_parses_or_errs(text in "(vaultfs-soft-fido2 1\n)?([a-z-]{0,16} [0-9a-z]{0,70}\n){0,8}") {
        let _ = State::decode(&text);
    }

    #[test]
    fn any_state_bytes_open_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (_dir, path) = state_file();
        fs::write(&path, &bytes).unwrap();
        if let Err(e) = SoftAuthenticator::open(&path) {
            prop_assert!(matches!(e, Error::State { .. }), "{}", e);
        }
    }
}
