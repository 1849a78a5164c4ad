//! The bookkeeping of a paged KV cache: which fixed-size blocks are free,
//! which sequences hold which, and which hold a known token prefix that a
//! later sequence may reuse.
//!
//! Pure data structure (no tensors): [`crate::kv_cache::KvPool`] pairs it
//! with the storage. A block is in exactly one of three states:
//! - **held**: one or more sequences reference it (`refs > 0`);
//! - **cached**: nobody holds it, but it carries a published prefix key, so a
//!   later request with the same prefix can take it back; evicted least
//!   recently used first when blocks run out;
//! - **free**: nobody holds it and it carries nothing.
//!
//! A published block is immutable: a sequence that would write into it copies
//! it first (see `KvCache`), so sharing can never change another sequence's
//! keys and values.

use std::collections::{BTreeMap, HashMap};

/// Index of a block in its pool.
pub type BlockId = u32;

/// Identity of a full block's contents: a hash of every token from position 0
/// through the end of the block (so a block is only reused after the same
/// prefix).
pub type BlockKey = [u8; 32];

/// Counts of blocks by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Blocks in the pool.
    pub total: usize,
    /// Blocks some sequence holds.
    pub held: usize,
    /// Blocks nobody holds that keep a reusable prefix (evictable).
    pub cached: usize,
    /// Blocks that are empty.
    pub free: usize,
}

/// Reference counts, the free list, and the index of published prefixes.
#[derive(Debug)]
pub struct BlockAllocator {
    refs: Vec<u32>,
    key: Vec<Option<BlockKey>>,
    /// When each cached block was last released (its key in `lru`).
    stamp: Vec<u64>,
    free: Vec<BlockId>,
    /// Cached blocks by release time, oldest first.
    lru: BTreeMap<u64, BlockId>,
    index: HashMap<BlockKey, BlockId>,
    clock: u64,
}

impl BlockAllocator {
    /// `n_blocks` free blocks.
    pub fn new(n_blocks: usize) -> BlockAllocator {
        let n = n_blocks.min(BlockId::MAX as usize);
        BlockAllocator {
            refs: vec![0; n],
            key: vec![None; n],
            stamp: vec![0; n],
            // Popped from the end: hand out low ids first.
            free: (0..n as BlockId).rev().collect(),
            lru: BTreeMap::new(),
            index: HashMap::new(),
            clock: 0,
        }
    }

    /// Blocks by state.
    pub fn stats(&self) -> BlockStats {
        let held = self.refs.iter().filter(|&&r| r > 0).count();
        BlockStats {
            total: self.refs.len(),
            held,
            cached: self.lru.len(),
            free: self.free.len(),
        }
    }

    /// Blocks that [`Self::alloc`] can still hand out (free, then cached ones evicted).
    pub fn available(&self) -> usize {
        self.free.len() + self.lru.len()
    }

    /// A block for one holder: a free one, or else the least recently used
    /// cached one (its prefix forgotten). `None` when every block is held.
    pub fn alloc(&mut self) -> Option<BlockId> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.lru.pop_first()?;
                if let Some(k) = self.key[b as usize].take() {
                    self.index.remove(&k);
                }
                b
            }
        };
        self.refs[b as usize] = 1;
        Some(b)
    }

    /// One more holder of a held block.
    pub fn retain(&mut self, b: BlockId) {
        debug_assert!(self.refs[b as usize] > 0, "retain of an unheld block");
        self.refs[b as usize] += 1;
    }

    /// One holder fewer; the last one leaves the block cached (if it carries
    /// a prefix) or free.
    pub fn release(&mut self, b: BlockId) {
        let r = &mut self.refs[b as usize];
        debug_assert!(*r > 0, "release of an unheld block");
        *r = r.saturating_sub(1);
        if *r > 0 {
            return;
        }
        if self.key[b as usize].is_some() {
            self.clock += 1;
            self.stamp[b as usize] = self.clock;
            self.lru.insert(self.clock, b);
        } else {
            self.free.push(b);
        }
    }

    /// Whether writing into `b` could be seen by someone else: another holder,
    /// or a published prefix that later requests may reuse.
    pub fn is_shared(&self, b: BlockId) -> bool {
        self.refs[b as usize] > 1 || self.key[b as usize].is_some()
    }

    /// Makes held block `b` findable by `key`. Returns `false` (and changes
    /// nothing) if another block already carries that key or `b` already has one.
    pub fn publish(&mut self, b: BlockId, key: BlockKey) -> bool {
        debug_assert!(self.refs[b as usize] > 0, "publish of an unheld block");
        if self.key[b as usize].is_some() || self.index.contains_key(&key) {
            return false;
        }
        self.key[b as usize] = Some(key);
        self.index.insert(key, b);
        true
    }

    /// The block carrying `key`, now held once more (taken out of the cache
    /// if nobody held it).
    pub fn lookup(&mut self, key: &BlockKey) -> Option<BlockId> {
        let b = *self.index.get(key)?;
        if self.refs[b as usize] == 0 {
            self.lru.remove(&self.stamp[b as usize]);
        }
        self.refs[b as usize] += 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> BlockKey {
        [n; 32]
    }

    #[test]
    fn blocks_move_between_free_held_and_cached() {
        let mut a = BlockAllocator::new(3);
        let b0 = a.alloc().unwrap();
        let b1 = a.alloc().unwrap();
        assert_eq!((b0, b1), (0, 1));
        assert_eq!(
            a.stats(),
            BlockStats {
                total: 3,
                held: 2,
                cached: 0,
                free: 1
            }
        );
        assert!(a.publish(b0, key(7)));
        assert!(!a.publish(b1, key(7)), "one block per key");
        assert!(a.is_shared(b0) && !a.is_shared(b1));
        a.release(b0);
        a.release(b1);
        assert_eq!((a.stats().cached, a.stats().free), (1, 2));
        // The cached block comes back by its key, and is held again.
        assert_eq!(a.lookup(&key(7)), Some(b0));
        assert_eq!((a.stats().held, a.stats().cached), (1, 0));
        a.retain(b0);
        a.release(b0);
        assert!(a.stats().held == 1 && a.is_shared(b0));
        a.release(b0);
        assert_eq!(a.stats().cached, 1);
    }

    #[test]
    fn cached_blocks_are_evicted_oldest_first_only_when_needed() {
        let mut a = BlockAllocator::new(3);
        let ids: Vec<_> = (0..3).map(|_| a.alloc().unwrap()).collect();
        for (i, &b) in ids.iter().enumerate() {
            a.publish(b, key(i as u8));
        }
        assert_eq!(a.alloc(), None, "every block is held");
        a.release(ids[1]);
        a.release(ids[0]);
        a.release(ids[2]);
        assert_eq!(a.available(), 3);
        // The first released (ids[1]) goes first, and its key is forgotten.
        assert_eq!(a.alloc(), Some(ids[1]));
        assert_eq!(a.lookup(&key(1)), None);
        assert_eq!(a.lookup(&key(0)), Some(ids[0]));
        assert_eq!(a.alloc(), Some(ids[2]));
        assert_eq!(a.lookup(&key(2)), None);
        assert_eq!(a.alloc(), None);
        let s = a.stats();
        assert_eq!((s.held, s.cached, s.free), (3, 0, 0));
    }

    #[test]
    fn a_reused_block_is_not_cached_twice() {
        let mut a = BlockAllocator::new(2);
        let b = a.alloc().unwrap();
        a.publish(b, key(1));
        a.release(b);
        let again = a.lookup(&key(1)).unwrap();
        a.release(again);
        assert_eq!(a.stats().cached, 1);
        assert_eq!(
            a.alloc(),
            Some(1),
            "the free block goes before the cached one"
        );
        assert_eq!(a.alloc(), Some(b));
        assert_eq!(a.alloc(), None);
    }
}
