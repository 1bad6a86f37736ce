//! The vault's policy: on a cluster vault, a policy stored in the vault
//! that every host's mount follows on top of its own file
//! (docs/POLICY.md, "The vault's policy"). Each host enforces the
//! strictest of its file and the vault's policy, key by key, so the vault's
//! policy can tighten every host at once but never loosen what a host's own
//! file says. Pure, like the rest of this module but the watcher.

use std::collections::BTreeSet;

use super::{Error, LevelPolicy, Policy, RateLimits};

/// Keys that name something on one host (a command it runs, where its
/// records go, a directory of its own): a host's file has them, the vault's
/// policy does not.
const HOST_KEYS: [&str; 3] = ["approval_notify", "export", "audit"];

impl Policy {
    /// Parses the text of a vault's policy: a policy file's keys, less the
    /// ones of one host ([`HOST_KEYS`]), at least as strict as the floor.
    pub fn parse_vault_wide(text: &str) -> Result<Policy, Error> {
        let p = Policy::parse(text)?;
        let floor = Policy::floor();
        let host_key = if p.approval_notify.is_some() {
            Some(HOST_KEYS[0])
        } else if !p.exports.is_empty() {
            Some(HOST_KEYS[1])
        } else if p.audit_archive != floor.audit_archive {
            Some(HOST_KEYS[2])
        } else {
            None
        };
        if let Some(key) = host_key {
            return Err(Error::Malformed {
                key: Some(key.to_string()),
                location: None,
                message: "names something on one host: it belongs in each host's policy file, \
                          not in the vault's policy"
                    .into(),
            });
        }
        let looser = floor.loosenings(&p);
        if !looser.is_empty() {
            return Err(Error::Looser { floor: looser, current: Vec::new() });
        }
        Ok(p)
    }

    /// The strictest of `self` (a host's file) and `vault` (the vault's
    /// policy), key by key (module docs of `policy`, "Strictness"); the
    /// keys of one host (`approval_notify`, exports, `[audit]`) are
    /// `self`'s. Secret patterns are both lists.
    pub fn strictest(&self, vault: &Policy) -> Policy {
        let levels = std::array::from_fn(|n| strictest_level(&self.levels[n], &vault.levels[n]));
        let mut patterns = self.secrets.patterns.clone();
        for p in &vault.secrets.patterns {
            if !patterns.contains(p) {
                patterns.push(p.clone());
            }
        }
        Policy {
            levels,
            rate_limits: strictest_rates(&self.rate_limits, &vault.rate_limits),
            ephemeral_max_age: self.ephemeral_max_age.min(vault.ephemeral_max_age),
            lockdown: self.lockdown || vault.lockdown,
            approval_notify: self.approval_notify.clone(),
            exports: self.exports.clone(),
            secrets: super::SecretScan { scan: self.secrets.scan || vault.secrets.scan, patterns },
            audit_archive: self.audit_archive.clone(),
        }
    }

    /// As [`Policy::accept`], for a host whose vault has a policy of its
    /// own: `text` (the host's file) is checked against the floor alone,
    /// and the strictest of it and `vault` against `current`.
    pub fn accept_beside(current: &Policy, text: &str, vault: Option<&Policy>) -> Result<Policy, Error> {
        let file = Policy::parse(text)?;
        let floor = Policy::floor().loosenings(&file);
        let new = vault.map_or_else(|| file.clone(), |v| file.strictest(v));
        let floor_keys: BTreeSet<&str> = floor.iter().filter_map(|l| l.split(':').next()).collect();
        let current: Vec<String> = current
            .loosenings(&new)
            .into_iter()
            .filter(|l| l.split(':').next().is_none_or(|k| !floor_keys.contains(k)))
            .collect();
        if floor.is_empty() && current.is_empty() { Ok(new) } else { Err(Error::Looser { floor, current }) }
    }
}

fn strictest_level(a: &LevelPolicy, b: &LevelPolicy) -> LevelPolicy {
    let relock_after = match (a.relock_after, b.relock_after) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    LevelPolicy {
        cooldown: a.cooldown.max(b.cooldown),
        approval_timeout: a.approval_timeout.min(b.approval_timeout),
        approval_window: a.approval_window.min(b.approval_window),
        relock_after,
        require_approval: a.require_approval || b.require_approval,
        require_justification: a.require_justification || b.require_justification,
    }
}

/// Each uid's limit is the lower of its limit under `a` and under `b`
/// (unlimited is the highest).
fn strictest_rates(a: &RateLimits, b: &RateLimits) -> RateLimits {
    let lower = |x: Option<u32>, y: Option<u32>| match (x, y) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let uids: BTreeSet<u32> = a.per_uid.keys().chain(b.per_uid.keys()).copied().collect();
    RateLimits {
        opens_per_minute: lower(a.opens_per_minute, b.opens_per_minute),
        per_uid: uids
            .into_iter()
            .filter_map(|uid| lower(a.for_uid(uid), b.for_uid(uid)).map(|r| (uid, r)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn parse(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    #[test]
    fn the_strictest_takes_each_key_from_the_stricter_side() {
        let file = parse(
            "ephemeral_max_age = \"2h\"\n[levels.3]\ncooldown = \"5s\"\napproval_window = \"30s\"\n\
             [rate_limit]\nopens_per_minute = 100\n[rate_limit.uid.7]\nopens_per_minute = 500\n\
             [secrets]\nscan = true\npatterns = [\"a+\"]\n",
        );
        let vault = parse(
            "ephemeral_max_age = \"1d\"\n[levels.3]\ncooldown = \"1s\"\napproval_window = \"10s\"\n\
             [levels.2]\nrequire_approval = true\nrelock_after = \"1h\"\n\
             [rate_limit.uid.7]\nopens_per_minute = 50\n[rate_limit.uid.8]\nopens_per_minute = 900\n\
             [secrets]\npatterns = [\"b+\", \"a+\"]\n",
        );
        let both = file.strictest(&vault);
        assert_eq!(both.ephemeral_max_age, Duration::from_secs(7200));
        assert_eq!(both.levels[3].cooldown, Duration::from_secs(5));
        assert_eq!(both.levels[3].approval_window, Duration::from_secs(10));
        assert!(both.levels[2].require_approval);
        assert_eq!(both.levels[2].relock_after, Some(Duration::from_secs(3600)));
        assert_eq!(both.rate_limits.for_uid(7), Some(50));
        // uid 8's override is looser than the file's default: the default holds.
        assert_eq!(both.rate_limits.for_uid(8), Some(100));
        assert_eq!(both.rate_limits.for_uid(9), Some(100));
        assert!(both.secrets.scan);
        assert_eq!(both.secrets.patterns, ["a+", "b+"]);
    }

    #[test]
    fn the_vault_policy_has_no_keys_of_one_host() {
        let notify = Policy::parse_vault_wide("approval_notify = [\"/bin/true\"]\n").unwrap_err();
        assert!(notify.to_string().contains("approval_notify: names something on one host"), "{notify}");
        let export = "[export.s]\nformat = \"syslog\"\naddress = \"udp://127.0.0.1:514\"\n";
        assert!(Policy::parse_vault_wide(export).unwrap_err().to_string().contains("export:"));
        let audit = "[audit]\narchive_dir = \"/a\"\nkeep = \"1d\"\n";
        assert!(Policy::parse_vault_wide(audit).unwrap_err().to_string().contains("audit:"));
        let looser = Policy::parse_vault_wide("[levels.4]\ncooldown = \"1s\"\n").unwrap_err();
        assert!(matches!(looser, Error::Looser { .. }), "{looser}");
        assert!(Policy::parse_vault_wide("lockdown = true\n").unwrap().lockdown);
    }

    #[test]
    fn a_host_file_is_judged_beside_the_vault_policy() {
        let vault = parse("[levels.3]\ncooldown = \"20s\"\n");
        let current = parse("[levels.3]\ncooldown = \"10s\"\n").strictest(&vault);
        // Looser than the file in force, but the vault's policy covers it.
        let p = Policy::accept_beside(&current, "[levels.3]\ncooldown = \"5s\"\n", Some(&vault)).unwrap();
        assert_eq!(p.levels[3].cooldown, Duration::from_secs(20));
        // Without it, that is a loosening.
        let e = Policy::accept_beside(&current, "[levels.3]\ncooldown = \"5s\"\n", None).unwrap_err();
        assert!(e.to_string().contains("levels.3.cooldown"), "{e}");
        // A file looser than the floor is refused whatever the vault says.
        let e = Policy::accept_beside(&Policy::floor(), "[levels.4]\ncooldown = \"0s\"\n", Some(&vault))
            .unwrap_err();
        assert!(matches!(&e, Error::Looser { floor, .. } if !floor.is_empty()), "{e}");
    }

    fn level() -> impl Strategy<Value = LevelPolicy> {
        (0u64..100, 1u64..100, 0u64..100, proptest::option::of(1u64..100), any::<bool>(), any::<bool>())
            .prop_map(|(c, t, w, r, a, j)| LevelPolicy {
                cooldown: Duration::from_secs(c),
                approval_timeout: Duration::from_secs(t),
                approval_window: Duration::from_secs(w),
                relock_after: r.map(Duration::from_secs),
                require_approval: a,
                require_justification: j,
            })
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (
            proptest::array::uniform6(level()),
            proptest::option::of(0u32..1000),
            proptest::collection::btree_map(0u32..5, 0u32..1000, 0..3),
            1u64..1000,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(levels, rate, per_uid, age, lockdown, scan)| {
                let mut p = Policy::floor();
                p.levels = levels;
                p.rate_limits = RateLimits { opens_per_minute: rate, per_uid };
                p.ephemeral_max_age = Duration::from_secs(age);
                p.lockdown = lockdown;
                p.secrets.scan = scan;
                p
            })
    }

    proptest! {
        /// The strictest of two policies loosens neither, and is one of
        /// them when one is already at least as strict as the other.
        #[test]
        fn the_strictest_is_at_least_as_strict_as_both(a in policy(), b in policy()) {
            let both = a.strictest(&b);
            prop_assert!(a.loosenings(&both).is_empty(), "{:?}", a.loosenings(&both));
            prop_assert!(b.loosenings(&both).is_empty(), "{:?}", b.loosenings(&both));
            prop_assert_eq!(a.strictest(&a), a.clone());
            if a.loosenings(&b).is_empty() {
                // b is at least as strict as a: nothing stricter than b is needed.
                prop_assert!(both.loosenings(&b).is_empty(), "{:?}", both.loosenings(&b));
            }
        }
    }
}
