use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn parse(text: &str) -> Policy {
    Policy::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The refusal of `text`: its key, location and message.
fn malformed(text: &str) -> (Option<String>, Option<Location>, String) {
    match Policy::parse(text) {
        Err(Error::Malformed { key, location, message }) => (key, location, message),
        other => panic!("{text:?} not refused as malformed: {other:?}"),
    }
}

fn refused_key(text: &str) -> String {
    malformed(text).0.unwrap_or_else(|| panic!("{text:?}: no key named"))
}

// ---- parsing ----

#[test]
fn empty_text_is_the_floor() {
    assert_eq!(parse(""), Policy::default());
    assert_eq!(parse("# nothing\n\n"), Policy::floor());
}

#[test]
fn the_defaults_are_as_documented() {
    let p = Policy::default();
    for n in 0..=2 {
        let l = p.level(n).unwrap();
        assert!(!l.require_approval);
        assert_eq!(l.relock_after, None);
        assert_eq!(l.cooldown, Duration::ZERO);
    }
    let expect = [(3, 0, 3600), (4, 10, 900), (5, 30, 900)];
    for (n, cooldown, relock) in expect {
        let l = p.level(n).unwrap();
        assert!(l.require_approval);
        assert_eq!(l.cooldown, secs(cooldown));
        assert_eq!(l.relock_after, Some(secs(relock)));
    }
    for l in &p.levels {
        assert_eq!((l.approval_timeout, l.approval_window), (secs(60), secs(60)));
    }
    assert_eq!(p.rate_limits, RateLimits::default());
    assert_eq!(p.ephemeral_max_age, secs(24 * 3600));
    assert!(!p.lockdown);
    assert!(p.level(6).is_none());
}

#[test]
fn every_key_parses() {
    let p = parse(
        r#"
lockdown = true
ephemeral_max_age = "12h"

[levels.1]
require_approval = true
cooldown = "250ms"
approval_timeout = 20
approval_window = "0s"

[levels.2]
relock_after = "2h"

[levels.3]
cooldown = "5s"
approval_timeout = "30s"
approval_window = "1m"
relock_after = "30m"
require_approval = true

[rate_limit]
opens_per_minute = 600

[rate_limit.uid.1000]
opens_per_minute = 100

[rate_limit.uid.0]
opens_per_minute = 0
"#,
    );
    let mut want = Policy { lockdown: true, ephemeral_max_age: secs(12 * 3600), ..Policy::default() };
    want.levels[1] = LevelPolicy {
        cooldown: Duration::from_millis(250),
        approval_timeout: secs(20),
        approval_window: Duration::ZERO,
        relock_after: None,
        require_approval: true,
        require_justification: false,
    };
    want.levels[2].relock_after = Some(secs(7200));
    want.levels[3] = LevelPolicy {
        cooldown: secs(5),
        approval_timeout: secs(30),
        approval_window: secs(60),
        relock_after: Some(secs(1800)),
        require_approval: true,
        require_justification: false,
    };
    want.rate_limits.opens_per_minute = Some(600);
    want.rate_limits.per_uid = BTreeMap::from([(0, 0), (1000, 100)]);
    assert_eq!(p, want);
    assert_eq!(p.rate_limits.for_uid(1000), Some(100));
    assert_eq!(p.rate_limits.for_uid(0), Some(0));
    assert_eq!(p.rate_limits.for_uid(5), Some(600));
}

#[test]
fn dotted_and_inline_tables_mean_the_same() {
    let a = parse("levels.4.cooldown = \"1m\"\nrate_limit.uid.7.opens_per_minute = 3\n");
    let b = parse(
        "levels = { 4 = { cooldown = 60 } }\nrate_limit = { uid = { 7 = { opens_per_minute = 3 } } }\n",
    );
    assert_eq!(a, b);
    assert_eq!(a.levels[4].cooldown, secs(60));
    assert_eq!(a.rate_limits.for_uid(7), Some(3));
}

#[test]
fn integer_durations_are_seconds_in_any_radix() {
    assert_eq!(parse("levels.5.cooldown = 45").levels[5].cooldown, secs(45));
    assert_eq!(parse("levels.5.cooldown = 0x10").levels[5].cooldown, secs(16));
    assert_eq!(parse("levels.5.cooldown = 1_000").levels[5].cooldown, secs(1000));
    assert_eq!(parse("levels.5.cooldown = +7").levels[5].cooldown, secs(7));
}

#[test]
fn duration_bounds() {
    // approval_timeout: 1 s ..= 1 h.
    assert_eq!(parse("levels.3.approval_timeout = \"1h\"").levels[3].approval_timeout, secs(3600));
    assert_eq!(parse("levels.3.approval_timeout = \"1s\"").levels[3].approval_timeout, secs(1));
    for bad in ["\"3601s\"", "3601", "\"2h\"", "\"0s\"", "0", "\"999ms\""] {
        let (key, _, msg) = malformed(&format!("levels.3.approval_timeout = {bad}"));
        assert_eq!(key.as_deref(), Some("levels.3.approval_timeout"), "{bad}");
        assert!(msg.contains("out of bounds"), "{bad}: {msg}");
    }
    // Everything else: at most 30 days.
    assert_eq!(parse("levels.4.cooldown = \"30d\"").levels[4].cooldown, secs(30 * 86400));
    assert_eq!(parse("levels.4.cooldown = \"0s\"").levels[4].cooldown, Duration::ZERO);
    for key in ["levels.4.cooldown", "levels.4.approval_window", "levels.4.relock_after", "ephemeral_max_age"]
    {
        assert_eq!(refused_key(&format!("{key} = \"31d\"")), key);
        assert_eq!(refused_key(&format!("{key} = 2592001")), key);
        assert_eq!(refused_key(&format!("{key} = 99999999999999999999999")), key);
    }
    // relock_after and ephemeral_max_age: at least 1 s.
    assert_eq!(refused_key("levels.4.relock_after = 0"), "levels.4.relock_after");
    assert_eq!(refused_key("ephemeral_max_age = \"0ms\""), "ephemeral_max_age");
    assert_eq!(parse("ephemeral_max_age = \"1s\"").ephemeral_max_age, secs(1));
}

#[test]
fn bad_duration_strings_are_refused_with_the_key() {
    for bad in [
        "\"5x\"",
        "\"30\"",
        "\"\"",
        "\"1.5h\"",
        "\"-5s\"",
        "\"5 s\"",
        "-5",
        "1.5",
        "true",
        "[1]",
        "1979-05-27",
    ] {
        let text = format!("[levels.5]\ncooldown = {bad}\n");
        let (key, loc, msg) = malformed(&text);
        assert_eq!(key.as_deref(), Some("levels.5.cooldown"), "{bad}: {msg}");
        assert_eq!(loc, Some(Location { line: 2, column: 12 }), "{bad}: {msg}");
    }
}

#[test]
fn relock_after_never_and_where_it_applies() {
    assert_eq!(parse("levels.4.relock_after = \"never\"").levels[4].relock_after, None);
    assert_eq!(parse("levels.2.relock_after = \"10m\"").levels[2].relock_after, Some(secs(600)));
    for n in [0, 1] {
        let (key, _, msg) = malformed(&format!("levels.{n}.relock_after = \"10m\""));
        assert_eq!(key.unwrap(), format!("levels.{n}.relock_after"));
        assert!(msg.contains("never locked"), "{msg}");
    }
    assert_eq!(refused_key("levels.4.relock_after = \"Never\""), "levels.4.relock_after");
}

#[test]
fn approval_settings_need_require_approval() {
    for field in ["cooldown", "approval_timeout", "approval_window"] {
        let (key, _, msg) = malformed(&format!("[levels.1]\n{field} = \"5s\"\n"));
        assert_eq!(key.unwrap(), format!("levels.1.{field}"));
        assert!(msg.contains("require_approval"), "{msg}");
        // Order in the table does not matter.
        parse(&format!("[levels.1]\n{field} = \"5s\"\nrequire_approval = true\n"));
        parse(&format!("[levels.2]\nrequire_approval = true\n{field} = \"5s\"\n"));
    }
    // Parsing is structural: turning approval off at level 3 parses (accept refuses it).
    assert_eq!(refused_key("[levels.3]\nrequire_approval = false\ncooldown = 1\n"), "levels.3.cooldown");
    assert!(!parse("[levels.3]\nrequire_approval = false\n").levels[3].require_approval);
}

#[test]
fn unknown_keys_are_refused_at_every_depth() {
    let cases = [
        ("lockdwn = true", "lockdwn", (1, 1)),
        ("[levels.3]\ncolldown = \"5s\"", "levels.3.colldown", (2, 1)),
        ("[rate_limit]\nopens_per_second = 5", "rate_limit.opens_per_second", (2, 1)),
        ("[rate_limit.uid.1000]\nopens_per_minute = 5\nburst = 2", "rate_limit.uid.1000.burst", (3, 1)),
        ("[levelz.3]\ncooldown = 1", "levelz", (1, 2)),
    ];
    for (text, want_key, (line, column)) in cases {
        let (key, loc, msg) = malformed(text);
        assert_eq!(key.as_deref(), Some(want_key), "{text}");
        assert_eq!(loc, Some(Location { line, column }), "{text}");
        assert!(msg.contains("unknown key"), "{msg}");
    }
}

#[test]
fn wrong_types_are_refused() {
    let cases = [
        ("lockdown = \"yes\"", "lockdown"),
        ("lockdown = 1", "lockdown"),
        ("ephemeral_max_age = 1.5", "ephemeral_max_age"),
        ("levels = 5", "levels"),
        ("levels.3 = 1", "levels.3"),
        ("[[levels]]\ncooldown = 1", "levels"),
        ("levels.3.require_approval = \"true\"", "levels.3.require_approval"),
        ("rate_limit = 600", "rate_limit"),
        ("rate_limit.opens_per_minute = \"600\"", "rate_limit.opens_per_minute"),
        ("rate_limit.opens_per_minute = 6e2", "rate_limit.opens_per_minute"),
        ("rate_limit.uid = [1000]", "rate_limit.uid"),
        ("rate_limit.uid.1000 = 100", "rate_limit.uid.1000"),
    ];
    for (text, want_key) in cases {
        let (key, loc, msg) = malformed(text);
        assert_eq!(key.as_deref(), Some(want_key), "{text}: {msg}");
        assert!(loc.is_some(), "{text}");
        assert!(msg.starts_with("expected "), "{text}: {msg}");
    }
}

#[test]
fn bad_level_numbers_are_refused() {
    for bad in ["6", "03", "-1", "x", "3-sealed", "sealed", "10", "\"\""] {
        let (key, _, msg) = malformed(&format!("[levels.{bad}]\nrequire_approval = true\n"));
        assert!(key.as_deref().is_some_and(|k| k.starts_with("levels.")), "{bad}: {key:?}");
        assert!(msg.contains("no level"), "{bad}: {msg}");
    }
}

#[test]
fn rate_limits_bounds_and_uids() {
    assert_eq!(parse("rate_limit.opens_per_minute = 1000000").rate_limits.opens_per_minute, Some(1_000_000));
    assert_eq!(parse("rate_limit.opens_per_minute = 0").rate_limits.opens_per_minute, Some(0));
    let (_, _, msg) = malformed("rate_limit.opens_per_minute = 1000001");
    assert!(msg.contains("out of bounds (0 ..= 1000000)"), "{msg}");
    let (_, _, msg) = malformed("rate_limit.opens_per_minute = -1");
    assert!(msg.contains("negative"), "{msg}");
    assert_eq!(
        parse("rate_limit.uid.4294967294.opens_per_minute = 1").rate_limits.for_uid(u32::MAX - 1),
        Some(1)
    );
    for bad in ["01", "-1", "4294967295", "4294967296", "abc", "1e3"] {
        let (key, _, msg) = malformed(&format!("[rate_limit.uid.{bad}]\nopens_per_minute = 1\n"));
        assert_eq!(key.unwrap(), format!("rate_limit.uid.{bad}"));
        assert!(msg.contains("not a uid"), "{bad}: {msg}");
    }
    let (key, _, msg) = malformed("[rate_limit.uid.1000]\n");
    assert_eq!(key.as_deref(), Some("rate_limit.uid.1000"));
    assert!(msg.contains("missing opens_per_minute"), "{msg}");
}

#[test]
fn duplicate_keys_are_refused_with_their_location() {
    let cases = [
        ("lockdown = true\nlockdown = false\n", 2),
        ("[levels.3]\ncooldown = 1\n[levels.3]\ncooldown = 2\n", 3),
        ("[levels.3]\ncooldown = 1\ncooldown = 2\n", 3),
        ("levels.3.cooldown = 1\n[levels.3]\ncooldown = 2\n", 2),
        ("rate_limit = { opens_per_minute = 1, opens_per_minute = 2 }\n", 1),
    ];
    for (text, line) in cases {
        let (key, loc, msg) = malformed(text);
        assert_eq!(key, None, "{text}");
        assert_eq!(loc.map(|l| l.line), Some(line), "{text}: {msg}");
        assert!(msg.contains("duplicate") || msg.contains("redefin"), "{text}: {msg}");
    }
}

#[test]
fn syntax_errors_carry_a_location() {
    let (key, loc, msg) = malformed("lockdown = false\nlevels.3.cooldown = \"5s\n");
    assert_eq!(key, None);
    assert_eq!(loc.map(|l| l.line), Some(2), "{msg}");
    let (_, loc, _) = malformed("lockdown = false\n[levels.3\n");
    assert_eq!(loc.map(|l| l.line), Some(2));
    let (_, loc, _) = malformed("x");
    assert_eq!(loc.map(|l| l.line), Some(1));
    // Columns count characters, not bytes.
    let (_, loc, _) = malformed("# é\nlockdown = \"é\"\n");
    assert_eq!(loc, Some(Location { line: 2, column: 12 }));
}

#[test]
fn error_text_names_key_and_place() {
    let e = Policy::parse("\n[levels.4]\ncooldown = \"5x\"\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("malformed policy at line 3, column 12: levels.4.cooldown: "), "{text}");
    assert!(text.contains("unknown unit"), "{text}");
}

#[test]
fn oversized_text_is_refused() {
    let text = "#".repeat(MAX_POLICY_BYTES + 1);
    let (_, _, msg) = malformed(&text);
    assert!(msg.contains("bytes"), "{msg}");
}

// ---- loosenings ----

/// `old` with `f` applied.
fn with(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    p
}

/// Asserts `strict` is stricter than `loose` in exactly the field `key`.
fn assert_order(key: &str, strict: &Policy, loose: &Policy) {
    assert!(
        loose.loosenings(strict).is_empty(),
        "{key}: tightening reported as {:?}",
        loose.loosenings(strict)
    );
    let l = strict.loosenings(loose);
    assert_eq!(l.len(), 1, "{key}: {l:?}");
    assert!(l[0].starts_with(&format!("{key}: ")), "{key}: {l:?}");
}

#[test]
fn the_same_policy_is_no_loosening() {
    let p =
        parse("lockdown = true\nrate_limit.opens_per_minute = 5\nrate_limit.uid.1.opens_per_minute = 9\n");
    assert!(p.loosenings(&p).is_empty());
    assert!(Policy::default().loosenings(&Policy::default()).is_empty());
}

#[test]
fn each_level_field_each_direction() {
    for n in 0..LEVELS {
        let key = |f: &str| format!("levels.{n}.{f}");
        let base = Policy::default().levels[n].clone();
        let p = |f: &dyn Fn(&mut LevelPolicy)| {
            with(|p| {
                p.levels[n] = base.clone();
                f(&mut p.levels[n]);
            })
        };
        // Longer cooldown is stricter.
        assert_order(&key("cooldown"), &p(&|l| l.cooldown = secs(100)), &p(&|l| l.cooldown = secs(50)));
        // Shorter approval timeout and window are stricter.
        assert_order(
            &key("approval_timeout"),
            &p(&|l| l.approval_timeout = secs(5)),
            &p(&|l| l.approval_timeout = secs(50)),
        );
        assert_order(
            &key("approval_window"),
            &p(&|l| l.approval_window = Duration::ZERO),
            &p(&|l| l.approval_window = secs(1)),
        );
        // Shorter relock is stricter; never is the loosest.
        assert_order(
            &key("relock_after"),
            &p(&|l| l.relock_after = Some(secs(60))),
            &p(&|l| l.relock_after = Some(secs(61))),
        );
        assert_order(
            &key("relock_after"),
            &p(&|l| l.relock_after = Some(secs(60))),
            &p(&|l| l.relock_after = None),
        );
        // Requiring approval is stricter.
        assert_order(
            &key("require_approval"),
            &p(&|l| l.require_approval = true),
            &p(&|l| l.require_approval = false),
        );
    }
}

#[test]
fn ephemeral_age_and_lockdown_each_direction() {
    assert_order(
        "ephemeral_max_age",
        &with(|p| p.ephemeral_max_age = secs(3600)),
        &with(|p| p.ephemeral_max_age = secs(7200)),
    );
    let l = assert_lockdown();
    assert!(l.contains("vaultfs lockdown --exit"), "{l}");
}

fn assert_lockdown() -> String {
    assert_order("lockdown", &with(|p| p.lockdown = true), &with(|p| p.lockdown = false));
    with(|p| p.lockdown = true).loosenings(&Policy::default()).remove(0)
}

#[test]
fn rate_limits_each_direction() {
    let rl = |default: Option<u32>, uids: &[(u32, u32)]| {
        with(|p| {
            p.rate_limits = RateLimits { opens_per_minute: default, per_uid: uids.iter().copied().collect() }
        })
    };
    let d = "rate_limit.opens_per_minute";
    assert_order(d, &rl(Some(10), &[]), &rl(Some(11), &[]));
    assert_order(d, &rl(Some(10), &[]), &rl(None, &[]));
    assert_order(d, &rl(Some(0), &[]), &rl(Some(1), &[]));
    let u = "rate_limit.uid.1000.opens_per_minute";
    assert_order(u, &rl(Some(100), &[(1000, 5)]), &rl(Some(100), &[(1000, 6)]));
    assert_order(u, &rl(None, &[(1000, 5)]), &rl(None, &[]));
    // Removing an override stricter than the default loosens that uid...
    assert_order(u, &rl(Some(100), &[(1000, 5)]), &rl(Some(100), &[]));
    let removed = rl(Some(100), &[(1000, 5)]).loosenings(&rl(Some(100), &[]));
    assert!(removed[0].contains("the override was removed"), "{removed:?}");
    // ...removing one looser than the default tightens it...
    assert!(rl(Some(100), &[(1000, 500)]).loosenings(&rl(Some(100), &[])).is_empty());
    // ...and an override above the default is a loosening for that uid only.
    assert_order(u, &rl(Some(100), &[]), &rl(Some(100), &[(1000, 101)]));
    // Loosening the default loosens every uid that follows it, overrides excepted.
    let l = rl(Some(100), &[(1000, 5)]).loosenings(&rl(Some(200), &[(1000, 5)]));
    assert_eq!(l.len(), 1, "{l:?}");
    let l = rl(Some(100), &[(1000, 100)]).loosenings(&rl(Some(200), &[]));
    assert_eq!(l.len(), 2, "{l:?}");
}

#[test]
fn loosenings_list_every_change_with_values() {
    let strict = parse(
        "lockdown = true\nephemeral_max_age = \"1h\"\nlevels.5.cooldown = \"1m\"\n\
         rate_limit.opens_per_minute = 10\n",
    );
    let l = strict.loosenings(&Policy::default());
    assert_eq!(l.len(), 4, "{l:?}");
    assert!(l.iter().any(|s| s == "levels.5.cooldown: 1m -> 30s (a shorter cooldown is looser)"), "{l:?}");
    assert!(l.iter().any(|s| s.starts_with("ephemeral_max_age: 1h -> 1d")), "{l:?}");
    assert!(l.iter().any(|s| s.starts_with("rate_limit.opens_per_minute: 10/min -> unlimited")), "{l:?}");
}

#[test]
fn durations_print_in_the_largest_exact_unit() {
    let cases =
        [(0, "0s"), (250, "250ms"), (1500, "1500ms"), (90_000, "90s"), (900_000, "15m"), (86_400_000, "1d")];
    for (ms, text) in cases {
        assert_eq!(fmt_duration(Duration::from_millis(ms)), text);
        assert_eq!(file::parse_duration(text), Ok(Duration::from_millis(ms)));
    }
    assert_eq!(fmt_duration(Duration::from_nanos(1500)), "1.5µs");
}

// ---- accept ----

#[test]
fn a_tightening_is_accepted() {
    let current = Policy::default();
    let new = Policy::accept(&current, "levels.3.cooldown = \"5s\"\nlockdown = true\n").unwrap();
    assert_eq!(new.levels[3].cooldown, secs(5));
    assert!(new.lockdown);
    // And the same again, or tighter still, against it.
    assert_eq!(Policy::accept(&new, "levels.3.cooldown = \"5s\"\nlockdown = true\n").unwrap(), new);
    Policy::accept(&new, "levels.3.cooldown = \"6s\"\nlockdown = true\n").unwrap();
}

#[test]
fn a_loosening_is_refused_with_reasons_and_allowed_after_remount() {
    let current = parse("levels.3.cooldown = \"5s\"\nrate_limit.opens_per_minute = 100\n");
    let looser = "levels.3.cooldown = \"1s\"\nrate_limit.opens_per_minute = 200\n";
    match Policy::accept(&current, looser) {
        Err(Error::Looser { floor, current }) => {
            assert!(floor.is_empty(), "{floor:?}");
            assert_eq!(current.len(), 2, "{current:?}");
            assert!(current[0].starts_with("levels.3.cooldown: 5s -> 1s"), "{current:?}");
            assert!(current[1].starts_with("rate_limit.opens_per_minute: 100/min -> 200/min"), "{current:?}");
        }
        other => panic!("{other:?}"),
    }
    let text = Policy::accept(&current, looser).unwrap_err().to_string();
    assert!(text.contains("looser than the policy in force (loosening takes a remount)"), "{text}");
    // At a remount the file is checked against the floor only.
    assert_eq!(Policy::accept(&Policy::default(), looser).unwrap().levels[3].cooldown, secs(1));
}

#[test]
fn looser_than_the_floor_is_refused_even_at_mount() {
    let text =
        "levels.4.cooldown = \"1s\"\nlevels.5.require_approval = false\nlevels.3.relock_after = \"never\"\n";
    let current = parse("levels.4.cooldown = \"1m\"\nlockdown = true\n");
    match Policy::accept(&current, text) {
        Err(Error::Looser { floor, current }) => {
            assert_eq!(floor.len(), 3, "{floor:?}");
            assert!(floor.iter().any(|l| l.starts_with("levels.4.cooldown: 10s -> 1s")), "{floor:?}");
            assert!(floor.iter().any(|l| l.starts_with("levels.5.require_approval")), "{floor:?}");
            assert!(floor.iter().any(|l| l.starts_with("levels.3.relock_after: 1h -> never")), "{floor:?}");
            // The cooldown is reported once, against the floor; lockdown only against the current.
            assert_eq!(current.len(), 1, "{current:?}");
            assert!(current[0].starts_with("lockdown: "), "{current:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(Policy::accept(&Policy::default(), text), Err(Error::Looser { .. })));
    let shown = Policy::accept(&Policy::default(), text).unwrap_err().to_string();
    assert!(shown.starts_with("policy is looser than the built-in floor: "), "{shown}");
}

#[test]
fn leaving_lockdown_through_the_file_is_refused() {
    let current = parse("lockdown = true\n");
    let err = Policy::accept(&current, "lockdown = false\n").unwrap_err();
    assert!(err.to_string().contains("vaultfs lockdown --exit"), "{err}");
    // Deleting the key (or emptying the file) is the same loosening.
    assert!(Policy::accept(&current, "").is_err());
    // What `vaultfs lockdown --exit` does once authenticated: lift it from the
    // policy in force, and re-check the file, which must not say lockdown.
    let exited = Policy { lockdown: false, ..current };
    assert!(!Policy::accept(&exited, "").unwrap().lockdown);
}

#[test]
fn garbage_is_refused_as_malformed() {
    let current = Policy::default();
    for text in ["\u{0}", "[", "lockdown = true\n]]", "levels.3.cooldown = \"soon\"", "hello world"] {
        assert!(matches!(Policy::accept(&current, text), Err(Error::Malformed { .. })), "{text:?}");
    }
}

// ---- properties ----

/// TOML-ish fragments: real and near-miss keys, values of every type, headers.
fn fragment() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("lockdown".to_string()),
        Just("ephemeral_max_age".to_string()),
        Just("cooldown".to_string()),
        Just("approval_timeout".to_string()),
        Just("approval_window".to_string()),
        Just("relock_after".to_string()),
        Just("require_approval".to_string()),
        Just("opens_per_minute".to_string()),
        (0u8..8).prop_map(|n| format!("levels.{n}.cooldown")),
        (0u8..8).prop_map(|n| format!("levels.{n}.relock_after")),
        (0u8..8).prop_map(|n| format!("levels.{n}.require_approval")),
        any::<u32>().prop_map(|u| format!("rate_limit.uid.{u}.opens_per_minute")),
        "[a-z_.0-9\"-]{1,12}",
    ];
    let value = prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("\"never\"".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (
            0u64..100_000,
            prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just("d"), Just("x"), Just("")]
        )
            .prop_map(|(n, u)| format!("\"{n}{u}\"")),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("[1, 2]".to_string()),
        Just("{ cooldown = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        "\"[ -~]{0,10}\"",
    ];
    let header = prop_oneof![
        (0u8..8).prop_map(|n| format!("[levels.{n}]")),
        Just("[rate_limit]".to_string()),
        any::<u32>().prop_map(|u| format!("[rate_limit.uid.{u}]")),
        Just("[[levels]]".to_string()),
        "\\[[a-z_.0-9]{0,10}\\]?",
    ];
    prop_oneof![
        3 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => header,
        1 => "[ -~\n\t]{0,20}",
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..8).prop_map(|lines| lines.join("\n"))
}

fn duration_choice() -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), Just(secs(1)), Just(secs(10)), Just(secs(60)), Just(secs(3600))]
}

fn level_policy() -> impl Strategy<Value = LevelPolicy> {
    (
        duration_choice(),
        duration_choice(),
        duration_choice(),
        prop::option::of(duration_choice()),
        any::<bool>(),
    )
        .prop_map(|(cooldown, approval_timeout, approval_window, relock_after, require_approval)| {
            LevelPolicy {
                cooldown,
                approval_timeout,
                approval_window,
                relock_after,
                require_approval,
                require_justification: false,
            }
        })
}

/// Any policy, over few values so that orderings between two are common.
fn policy() -> impl Strategy<Value = Policy> {
    let rate = prop::option::of(prop_oneof![Just(0u32), Just(10), Just(100)]);
    let uids = prop::collection::btree_map(
        prop_oneof![Just(0u32), Just(1000)],
        prop_oneof![Just(0u32), Just(50)],
        0..3,
    );
    (
        prop::array::uniform6(level_policy()),
        rate,
        uids,
        prop_oneof![Just(secs(60)), Just(secs(86400))],
        any::<bool>(),
    )
        .prop_map(|(levels, opens_per_minute, per_uid, ephemeral_max_age, lockdown)| Policy {
            levels,
            rate_limits: RateLimits { opens_per_minute, per_uid },
            ephemeral_max_age,
            lockdown,
            approval_notify: None,
            exports: Vec::new(),
            secrets: SecretScan::default(),
            audit_archive: Default::default(),
        })
}

/// The policy file text for `p`, every key written out (`p` must be
/// representable: see [`representable`]).
fn to_text(p: &Policy) -> String {
    let mut t = format!("lockdown = {}\nephemeral_max_age = {}\n", p.lockdown, p.ephemeral_max_age.as_secs());
    for (n, l) in p.levels.iter().enumerate() {
        t += &format!("[levels.{n}]\nrequire_approval = {}\n", l.require_approval);
        if l.require_approval {
            t += &format!(
                "cooldown = \"{}\"\napproval_timeout = \"{}\"\napproval_window = {}\n",
                fmt_duration(l.cooldown),
                fmt_duration(l.approval_timeout),
                l.approval_window.as_secs()
            );
        }
        if n >= 2 {
            t += &format!("relock_after = \"{}\"\n", l.relock_after.map_or("never".into(), fmt_duration));
        }
    }
    t += "[rate_limit]\n";
    if let Some(r) = p.rate_limits.opens_per_minute {
        t += &format!("opens_per_minute = {r}\n");
    }
    for (uid, r) in &p.rate_limits.per_uid {
        t += &format!("[rate_limit.uid.{uid}]\nopens_per_minute = {r}\n");
    }
    t
}

/// `p` adjusted to what the file can say.
fn representable(mut p: Policy) -> Policy {
    let floor = Policy::default();
    for (n, l) in p.levels.iter_mut().enumerate() {
        if !l.require_approval {
            l.cooldown = floor.levels[n].cooldown;
            l.approval_timeout = floor.levels[n].approval_timeout;
            l.approval_window = floor.levels[n].approval_window;
        }
        l.approval_timeout = l.approval_timeout.max(secs(1));
        if n < 2 {
            l.relock_after = None;
        } else if l.relock_after == Some(Duration::ZERO) {
            l.relock_after = Some(secs(1));
        }
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics_on_any_string(text in any::<String>()) {
        if let Err(e) = Policy::parse(&text) {
            let _ = e.to_string();
        }
        let _ = Policy::accept(&Policy::default(), &text);
    }

    #[test]
    fn parse_never_panics_on_toml_ish_documents(text in document()) {
        match Policy::parse(&text) {
            Ok(p) => prop_assert!(p.loosenings(&p).is_empty()),
            Err(e) => {
                prop_assert!(matches!(e, Error::Malformed { .. }), "{:?}", e);
                let _ = e.to_string();
            }
        }
        let current = Policy { lockdown: true, ..Policy::default() };
        if let Ok(p) = Policy::accept(&current, &text) {
            prop_assert!(Policy::floor().loosenings(&p).is_empty());
            prop_assert!(current.loosenings(&p).is_empty());
        }
    }

    #[test]
    fn strictness_is_reflexive_and_transitive(a in policy(), b in policy(), c in policy()) {
        prop_assert!(a.loosenings(&a).is_empty());
        if a.loosenings(&b).is_empty() && b.loosenings(&c).is_empty() {
            prop_assert!(a.loosenings(&c).is_empty(), "{:?}", a.loosenings(&c));
        }
    }

    #[test]
    fn accept_agrees_with_loosenings(current in policy(), new in policy()) {
        let new = representable(new);
        let text = to_text(&new);
        prop_assert_eq!(Policy::parse(&text), Ok(new.clone()), "{}", text);
        let ok = Policy::floor().loosenings(&new).is_empty() && current.loosenings(&new).is_empty();
        match Policy::accept(&current, &text) {
            Ok(p) => { prop_assert!(ok); prop_assert_eq!(p, new); }
            Err(Error::Looser { floor, current: cur }) => {
                prop_assert!(!ok);
                prop_assert!(!floor.is_empty() || !cur.is_empty());
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

#[test]
fn approval_notify_is_an_absolute_program_and_its_arguments() {
    let p = parse("approval_notify = [\"/usr/bin/logger\", \"-t\", \"vault\"]\n");
    assert_eq!(p.approval_notify, Some(vec!["/usr/bin/logger".into(), "-t".into(), "vault".into()]));
    assert_eq!(parse("").approval_notify, None);
    for (text, says) in [
        ("approval_notify = [\"logger\"]\n", "not an absolute path"),
        ("approval_notify = []\n", "strings are needed"),
        ("approval_notify = \"/bin/true\"\n", "expected an array"),
        ("approval_notify = [\"/bin/echo\", 3]\n", "expected an array"),
    ] {
        let (key, _, message) = malformed(text);
        assert_eq!(key.as_deref(), Some("approval_notify"), "{text}");
        assert!(message.contains(says), "{text}: {message}");
    }
    // It neither tightens nor loosens: adding or dropping it is accepted.
    let with = "approval_notify = [\"/bin/true\"]\n";
    let p = Policy::accept(&Policy::default(), with).unwrap();
    assert!(Policy::accept(&p, "").is_ok());
}

#[test]
fn exports_name_a_format_and_an_address_that_suits_it() {
    let p = parse(
        "[export.siem]\nformat = \"syslog\"\naddress = \"udp://127.0.0.1:514\"\n\
         [export.arc]\nformat = \"cef\"\naddress = \"tcp://[::1]:6514\"\nbatch = 50\n\
         [export.local]\nformat = \"syslog\"\naddress = \"unix:/dev/log\"\n\
         [export.lake]\nformat = \"json\"\naddress = \"http://127.0.0.1:8080/ingest\"\n",
    );
    let got: Vec<_> =
        p.exports.iter().map(|s| (s.name.as_str(), s.format, s.address.clone(), s.batch)).collect();
    assert_eq!(
        got,
        [
            ("siem", ExportFormat::Syslog, ExportAddress::Udp("127.0.0.1:514".into()), 100),
            ("arc", ExportFormat::Cef, ExportAddress::Tcp("[::1]:6514".into()), 50),
            ("local", ExportFormat::Syslog, ExportAddress::Unix("/dev/log".into()), 100),
            ("lake", ExportFormat::Json, ExportAddress::Http("http://127.0.0.1:8080/ingest".into()), 100),
        ]
    );
    for (text, key, says) in [
        ("[export.a]\nformat = \"syslog\"\naddress = \"udp://127.0.0.1\"\n", "export.a.address", "HOST:PORT"),
        ("[export.a]\nformat = \"syslog\"\naddress = \"udp://h:0\"\n", "export.a.address", "port from 1"),
        ("[export.a]\nformat = \"syslog\"\naddress = \"udp://h:99999\"\n", "export.a.address", "port from 1"),
        ("[export.a]\nformat = \"json\"\naddress = \"https://h:443/x\"\n", "export.a.address", "TLS"),
        ("[export.a]\nformat = \"json\"\naddress = \"udp://h:1\"\n", "export.a.address", "http://"),
        ("[export.a]\nformat = \"cef\"\naddress = \"http://h:1/\"\n", "export.a.address", "http://"),
        ("[export.a]\nformat = \"cef\"\naddress = \"unix:dev/log\"\n", "export.a.address", "absolute"),
        ("[export.a]\nformat = \"xml\"\naddress = \"udp://h:1\"\n", "export.a.format", "the formats"),
        ("[export.a]\naddress = \"udp://h:1\"\n", "export.a", "`format` is missing"),
        ("[export.a]\nformat = \"cef\"\n", "export.a", "`address` is missing"),
        ("[export.a]\nformat = \"cef\"\naddress = \"udp://h:1\"\nbatch = 0\n", "export.a.batch", "1 to"),
        ("[export.a]\nformat = \"cef\"\naddress = \"udp://h:1\"\nport = 1\n", "export.a.port", "unknown key"),
        ("[export.\"a b\"]\nformat = \"cef\"\naddress = \"udp://h:1\"\n", "export.a b", "name"),
    ] {
        let (k, _, message) = malformed(text);
        assert_eq!(k.as_deref(), Some(key), "{text}: {message}");
        assert!(message.contains(says), "{text}: {message}");
    }
}

#[test]
fn an_export_can_be_added_or_changed_but_not_dropped_by_a_reload() {
    let one = "[export.siem]\nformat = \"syslog\"\naddress = \"udp://127.0.0.1:514\"\n";
    let p = Policy::accept(&Policy::default(), one).unwrap();
    let moved = "[export.siem]\nformat = \"cef\"\naddress = \"tcp://10.0.0.1:514\"\n";
    assert!(Policy::accept(&p, moved).is_ok());
    match Policy::accept(&p, "") {
        Err(Error::Looser { current, .. }) => {
            assert!(current.iter().any(|l| l.contains("export.siem")), "{current:?}")
        }
        other => panic!("dropping an export was not refused: {other:?}"),
    }
}

#[test]
fn require_justification_is_for_levels_3_to_5_and_cannot_be_dropped_by_a_reload() {
    assert!(parse("[levels.4]\nrequire_justification = true\n").levels[4].require_justification);
    assert!(!Policy::default().levels[5].require_justification);
    let (key, _, msg) = malformed("[levels.2]\nrequire_justification = true\n");
    assert_eq!(key.as_deref(), Some("levels.2.require_justification"));
    assert!(msg.contains("levels 3 to 5"), "{msg}");
    let p = Policy::accept(&Policy::default(), "[levels.3]\nrequire_justification = true\n").unwrap();
    match Policy::accept(&p, "") {
        Err(Error::Looser { current, .. }) => {
            assert!(current.iter().any(|l| l.contains("levels.3.require_justification")), "{current:?}")
        }
        other => panic!("dropping require_justification was not refused: {other:?}"),
    }
}

#[test]
fn audit_archive_keys() {
    let p = Policy::parse("[audit]\narchive_dir = \"/var/lib/a\"\nkeep = \"30d\"\nkeep_bytes = 1073741824\n")
        .unwrap();
    assert_eq!(p.audit_archive.dir.as_deref(), Some(std::path::Path::new("/var/lib/a")));
    assert_eq!(p.audit_archive.keep, Some(Duration::from_secs(30 * 86400)));
    assert_eq!(p.audit_archive.keep_bytes, Some(1 << 30));
    let p = Policy::parse("[audit]\narchive_dir = \"/a\"\nkeep = \"3650d\"\n").unwrap();
    assert_eq!(p.audit_archive.keep, Some(Duration::from_secs(3650 * 86400)));
    for (text, want) in [
        ("[audit]\nkeep = \"1d\"\n", "need archive_dir"),
        ("[audit]\narchive_dir = \"/a\"\n", "needs keep or keep_bytes"),
        ("[audit]\narchive_dir = \"a\"\nkeep = 5\n", "not an absolute path"),
        ("[audit]\narchive_dir = \"/a\"\nkeep_bytes = 5\n", "out of bounds"),
        ("[audit]\narchive_dir = \"/a\"\nkeep = \"0s\"\n", "out of bounds"),
        ("[audit]\narchive = 1\n", "unknown"),
    ] {
        let e = Policy::parse(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}
