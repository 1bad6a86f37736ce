//! Reading the stored leaves back: singles, chunks and live slots in order,
//! and the `.audit` export whole (`text.rs` reads it in ranges).

use super::*;

/// AAD of a leaf stored alone (`A` keys, written before chunks).
pub(super) fn leaf_aad(vault_id: &[u8; 16], seq: u64) -> Vec<u8> {
    aad::build(aad::AUDIT_LEAF, &[vault_id, &seq.to_be_bytes()])
}

/// Chunk plaintext: each leaf as u16 length ‖ leaf bytes.
pub(super) fn decode_chunk(first: u64, count: u32, plain: &[u8]) -> Result<Vec<(u64, Vec<u8>)>> {
    let bad = || corrupt(format!("leaves {first}..{} are malformed", first + u64::from(count)));
    let mut out = Vec::with_capacity(count as usize);
    let mut rest = plain;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = u16::from_be_bytes(*len) as usize;
        let leaf = tail.get(..len).ok_or_else(bad)?;
        out.push((first + out.len() as u64, leaf.to_vec()));
        rest = &tail[len..];
    }
    if !rest.is_empty() || out.len() != count as usize {
        return Err(bad());
    }
    Ok(out)
}

impl Log {
    /// Where the chunks end (they follow any single leaves): the seq after
    /// the last one, or the archive base if that is later (every leaf went
    /// to an archive).
    pub(super) fn chunks_end(store: &Store, base: u64) -> Result<u64> {
        Ok(Self::stored_end(store)?.max(base))
    }

    pub(super) fn stored_end(store: &Store) -> Result<u64> {
        if let Some(k) = store.last_key_with_prefix(&[keys::AUDIT_LEAVES])? {
            let (first, count) = keys::audit_leaves_range(&k).ok_or_else(|| corrupt("bad leaf chunk key"))?;
            if count == 0 {
                return Err(corrupt("empty leaf chunk"));
            }
            return first.checked_add(u64::from(count)).ok_or_else(|| corrupt("bad leaf chunk key"));
        }
        match store.last_key_with_prefix(&[keys::AUDIT_LEAF])? {
            Some(k) => Ok(keys::audit_number(&k).ok_or_else(|| corrupt("bad leaf key"))? + 1),
            None => Ok(0),
        }
    }

    pub(super) fn open_chunk(&self, first: u64, count: u32, sealed: &[u8]) -> Result<Vec<u8>> {
        let plain =
            crypto::open(&self.leaf_key, &chunk_aad(&self.vault_id, first, count), sealed).map_err(|_| {
                match count {
                    1 => corrupt(format!("leaf {first} fails authentication")),
                    _ => corrupt(format!("leaves {first}..{} fail authentication", first + u64::from(count))),
                }
            })?;
        Ok(plain.to_vec())
    }

    /// The whole `.audit` text now (tests and fuzzing; the mount reads
    /// it in ranges).
    #[cfg(any(test, feature = "internals"))]
    pub fn export(&self, store: &Store) -> Result<Vec<u8>> {
        let Some(text) = self.text(store)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        while (out.len() as u64) < text.len() {
            out.extend(self.read_text(store, &text, out.len() as u64, 1 << 20)?);
        }
        Ok(out)
    }

    /// Stored leaves `from..to`, opened: (seq, leaf bytes). A leaf or chunk
    /// that fails to open, or a gap, is an error naming its index.
    pub fn leaves<'a>(
        &'a self,
        store: &'a Store,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + 'a {
        // Leaves before the base are in archive files: say so, and read nothing.
        let base = self.base_size();
        let archived = (from < base && from < to).then(|| {
            LogError::Range(format!("leaves before {base} are archived (docs/AUDIT.md, \"Archives\")"))
        });
        let to = if archived.is_some() { from } else { to };
        // Leaves stored alone (older vaults) come first, then chunks; the
        // first chunk read is the one holding `from`, if one does.
        let singles = store.range(&keys::audit_leaf(from), &keys::audit_leaf(to)).map(move |r| {
            let (k, v) = r?;
            let seq = keys::audit_number(&k).ok_or_else(|| corrupt("bad leaf key"))?;
            let bytes = crypto::open(&self.leaf_key, &leaf_aad(&self.vault_id, seq), &v)
                .map_err(|_| corrupt(format!("leaf {seq} fails authentication")))?;
            Ok(vec![(seq, bytes.to_vec())])
        });
        let start = store
            .last_key_in(&keys::audit_leaves_from(0), &keys::audit_leaves_from(from.saturating_add(1)))
            .map(|k| k.unwrap_or_else(|| keys::audit_leaves_from(from).to_vec()));
        let chunks = match start {
            Ok(start) => Box::new(store.range(&start, &keys::audit_leaves_from(to)).map(move |r| {
                let (k, v) = r?;
                let (first, count) =
                    keys::audit_leaves_range(&k).ok_or_else(|| corrupt("bad leaf chunk key"))?;
                let plain = self.open_chunk(first, count, &v)?;
                let mut leaves = decode_chunk(first, count, &plain)?;
                leaves.retain(|(seq, _)| (from..to).contains(seq));
                Ok(leaves)
            })) as Box<dyn Iterator<Item = Result<Vec<(u64, Vec<u8>)>>> + 'a>,
            Err(e) => Box::new(std::iter::once(Err(e.into()))),
        };
        // Then the live slots, read only once the chunks are and only if the
        // range reaches past them (after a commit, none is live).
        let slots = std::iter::once(()).flat_map(move |()| {
            let live = Self::chunks_end(store, base)
                .and_then(|end| if to > end { self.live_slots(store, end) } else { Ok(Vec::new()) });
            match live {
                Ok(live) => live
                    .into_iter()
                    .map(|(first, count, plain)| {
                        let mut leaves = decode_chunk(first, count, &plain)?;
                        leaves.retain(|(seq, _)| (from..to).contains(seq));
                        Ok(leaves)
                    })
                    .collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }
        });
        let mut expect = from;
        archived
            .map(Err::<Vec<(u64, Vec<u8>)>, _>)
            .into_iter()
            .chain(singles)
            .chain(chunks)
            .chain(slots)
            .flat_map(|r| match r {
                Ok(leaves) => leaves.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
            .map(move |r| {
                let (seq, bytes) = r?;
                if seq != expect {
                    return Err(corrupt(format!("leaf {expect} is missing")));
                }
                expect += 1;
                Ok((seq, bytes))
            })
    }

    /// Every stored checkpoint note, oldest first.
    pub fn checkpoint_notes(store: &Store) -> Result<Vec<(u64, String)>> {
        let mut out = Vec::new();
        for r in store.scan_prefix(&[keys::AUDIT_CHECKPOINT]) {
            let (k, v) = r?;
            let size = keys::audit_number(&k).ok_or_else(|| corrupt("bad checkpoint key"))?;
            let note = String::from_utf8(v.to_vec())
                .map_err(|_| corrupt(format!("checkpoint {size} is not UTF-8")))?;
            out.push((size, note));
        }
        Ok(out)
    }
}
