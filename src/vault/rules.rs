//! What each classification level means, in one table: who may enter, what
//! is scanned, closed, recorded and shredded (docs/GATES.md for the
//! factors that open each level's key, docs/AUDIT.md for the records).
//! Every per-level decision in the vault and the mount reads this table;
//! no other file compares a level with a threshold.

use super::types::LEVEL_COUNT;

/// The rules of one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelRules {
    /// Content lives for one mount: its key is never stored, and what is
    /// left is removed at the next unlock.
    pub ephemeral: bool,
    /// Writes are scanned for credentials when the policy turns scanning on
    /// (where agents work freely).
    pub scanned: bool,
    /// Only the uid that unlocked the vault gets in, even when the mount
    /// admits other users.
    pub owner_only: bool,
    /// `vaultfs lock` and a lockdown close it (levels below stay usable).
    pub lockable: bool,
    /// An open carries the caller's justification in its record, and the
    /// policy may refuse opens without one.
    pub justified: bool,
    /// An open's record is durable before the open succeeds.
    pub durable_opens: bool,
    /// The kernel drops the file's page cache at every open, so every read
    /// reaches the daemon and is recorded (below, cached pages are reused
    /// across opens; the opens are still recorded).
    pub reads_recorded: bool,
    /// Unlinking the last name destroys the file's key at once and leaves
    /// a tombstone saying who removed it.
    pub shredded: bool,
}

/// No rule: the root and anything that is not in a level.
const NONE: LevelRules = LevelRules {
    ephemeral: false,
    scanned: false,
    owner_only: false,
    lockable: false,
    justified: false,
    durable_opens: false,
    reads_recorded: false,
    shredded: false,
};

/// Levels 3 to 5: everything above `2-private`.
const SEALED: LevelRules = LevelRules {
    owner_only: true,
    lockable: true,
    justified: true,
    durable_opens: true,
    reads_recorded: true,
    shredded: true,
    ..NONE
};

/// The rules by level: 0-ephemeral, 1-working, 2-private, 3-sealed,
/// 4-vaulted, 5-black.
pub const LEVEL_RULES: [LevelRules; LEVEL_COUNT as usize] = [
    LevelRules { ephemeral: true, scanned: true, ..NONE },
    LevelRules { scanned: true, ..NONE },
    LevelRules { owner_only: true, lockable: true, ..NONE },
    SEALED,
    SEALED,
    SEALED,
];

/// The rules of `level` (None: the root, no rule). A level beyond the
/// table cannot come from an authenticated record; it gets the strictest.
pub fn rules(level: Option<u8>) -> &'static LevelRules {
    match level {
        None => &NONE,
        Some(l) => LEVEL_RULES.get(l as usize).unwrap_or(&SEALED),
    }
}

/// The levels `lock` and a lockdown close.
pub fn lockable_levels() -> impl Iterator<Item = u8> {
    (0..LEVEL_COUNT).filter(|l| LEVEL_RULES[*l as usize].lockable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_ordered_and_the_root_has_no_rule() {
        // What is strict at one level stays strict above it (0 alone is ephemeral).
        for pair in LEVEL_RULES.windows(2) {
            let (low, high) = (&pair[0], &pair[1]);
            for (l, h) in [
                (low.owner_only, high.owner_only),
                (low.lockable, high.lockable),
                (low.justified, high.justified),
                (low.durable_opens, high.durable_opens),
                (low.reads_recorded, high.reads_recorded),
                (low.shredded, high.shredded),
                (high.scanned, low.scanned),
            ] {
                assert!(!l || h);
            }
        }
        assert_eq!(lockable_levels().collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert_eq!(*rules(None), NONE);
        assert_eq!(*rules(Some(9)), SEALED);
        assert!(rules(Some(0)).ephemeral && !rules(Some(1)).ephemeral);
    }
}
