//! A regular file's bytes, as fixed-size blocks shared copy-on-write between the live and the
//! durable view of the volume.
//!
//! A sync makes the durable view share every block of the live one (cloning [`Contents`] is
//! O(1): a persistent map of `Arc`s); the next write to a shared block copies that block alone.
//! So a file that is written and synced over and over costs its size once, plus the blocks
//! written since its last sync.
//!
//! Invariants:
//! - Bytes of a stored block at or past `size` are zero, so growing a file (by `set_size` or by
//!   writing past a hole) shows zeros there, as POSIX requires.
//! - A block absent from the map reads as zeros (a hole).
//! - Every block allocated by a volume is counted in its [`BlockGauge`] for as long as it lives,
//!   whichever views share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use imbl::OrdMap;

/// The size of one block: a page, the unit the kernel and sled write in.
pub(crate) const BLOCK_SIZE: usize = 4096;
const BLOCK: u64 = BLOCK_SIZE as u64;

/// The largest file size: the block index of every byte must fit in a `u64` with room to spare.
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 50;

/// The bytes of block data a volume holds in memory, whichever views share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockGauge(Arc<AtomicU64>);

impl BlockGauge {
    pub(crate) fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn allocated(&self) {
        self.0.fetch_add(BLOCK, Ordering::Relaxed);
    }

    fn freed(&self) {
        self.0.fetch_sub(BLOCK, Ordering::Relaxed);
    }
}

/// One block of a file; counted in its volume's gauge from allocation to drop.
#[derive(Debug)]
struct Block {
    bytes: Box<[u8; BLOCK_SIZE]>,
    gauge: BlockGauge,
}

impl Block {
    fn zeroed(gauge: &BlockGauge) -> Self {
        gauge.allocated();
        Self {
            bytes: Box::new([0; BLOCK_SIZE]),
            gauge: gauge.clone(),
        }
    }
}

/// A copy is made only when a shared block is written (`Arc::make_mut`).
impl Clone for Block {
    fn clone(&self) -> Self {
        self.gauge.allocated();
        Self {
            bytes: self.bytes.clone(),
            gauge: self.gauge.clone(),
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.gauge.freed();
    }
}

/// The contents of one regular file: its size and its blocks by index.
#[derive(Debug, Clone, Default)]
pub(crate) struct Contents {
    size: u64,
    blocks: OrdMap<u64, Arc<Block>>,
}

/// Why a write or a size change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

impl Contents {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The bytes of block data this file refers to (holes cost nothing).
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK
    }

    /// Up to `len` bytes from `offset`, fewer at the end of the file.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Vec::new();
        }
        // `end - offset` is at most `len`, a usize.
        let mut out = vec![0; (end - offset) as usize];
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        for (&index, block) in self.blocks.range(first..=last) {
            let block_start = index * BLOCK;
            let from = offset.max(block_start);
            let to = end.min(block_start + BLOCK);
            let source = &block.bytes[(from - block_start) as usize..(to - block_start) as usize];
            out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(source);
        }
        out
    }

    /// Writes `data` at `offset`, growing the file if it ends past its size.
    pub(crate) fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        gauge: &BlockGauge,
    ) -> Result<(), TooLarge> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= MAX_FILE_SIZE)
            .ok_or(TooLarge)?;
        let mut position = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = position / BLOCK;
            let within = (position % BLOCK) as usize;
            let count = rest.len().min(BLOCK_SIZE - within);
            let block = self
                .blocks
                .entry(index)
                .or_insert_with(|| Arc::new(Block::zeroed(gauge)));
            Arc::make_mut(block).bytes[within..within + count].copy_from_slice(&rest[..count]);
            position += count as u64;
            rest = &rest[count..];
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Truncates or extends the file to `size`; an extension reads as zeros.
    pub(crate) fn set_size(&mut self, size: u64) -> Result<(), TooLarge> {
        if size > MAX_FILE_SIZE {
            return Err(TooLarge);
        }
        if size < self.size {
            let kept_blocks = size.div_ceil(BLOCK);
            let (kept, _dropped) = self.blocks.split(&kept_blocks);
            self.blocks = kept;
            self.zero_within_block(size, BLOCK - size % BLOCK);
        }
        self.size = size;
        Ok(())
    }

    /// Makes `len` bytes from `offset` read as zeros without changing the size (a punched hole).
    pub(crate) fn zero_range(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        let mut position = offset;
        while position < end {
            let index = position / BLOCK;
            let block_end = (index + 1) * BLOCK;
            if position.is_multiple_of(BLOCK) && block_end <= end {
                self.blocks.remove(&index);
            } else {
                self.zero_within_block(position, block_end.min(end) - position);
            }
            position = block_end;
        }
    }

    /// Zeroes `len` bytes from `offset`, all inside one block, if that block is stored.
    fn zero_within_block(&mut self, offset: u64, len: u64) {
        let within = (offset % BLOCK) as usize;
        if within == 0 && len >= BLOCK {
            self.blocks.remove(&(offset / BLOCK));
            return;
        }
        if let Some(block) = self.blocks.get_mut(&(offset / BLOCK)) {
            let end = (within + len as usize).min(BLOCK_SIZE);
            Arc::make_mut(block).bytes[within..end].fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_clone_shares_blocks_until_one_side_writes() {
        let gauge = BlockGauge::default();
        let mut live = Contents::default();
        live.write(0, &[1; 3 * BLOCK_SIZE], &gauge).expect("write");
        assert_eq!(gauge.bytes(), 3 * BLOCK);

        let durable = live.clone();
        assert_eq!(gauge.bytes(), 3 * BLOCK, "a clone copies no block");
        live.write(BLOCK + 10, b"xyz", &gauge).expect("write");
        assert_eq!(gauge.bytes(), 4 * BLOCK, "only the written block is copied");
        assert_eq!(durable.read(BLOCK + 10, 3), vec![1, 1, 1]);
        assert_eq!(live.read(BLOCK + 10, 3), b"xyz".to_vec());

        drop(durable);
        assert_eq!(
            gauge.bytes(),
            3 * BLOCK,
            "the old block is freed with its last view"
        );
        drop(live);
        assert_eq!(gauge.bytes(), 0);
    }

    #[test]
    fn a_shrink_then_a_grow_reads_zeros_where_data_was() {
        let gauge = BlockGauge::default();
        let mut contents = Contents::default();
        contents
            .write(0, &[7; BLOCK_SIZE + 100], &gauge)
            .expect("write");
        contents.set_size(10).expect("shrink");
        assert_eq!(gauge.bytes(), BLOCK, "blocks past the end are freed");
        contents.set_size(BLOCK + 100).expect("grow");
        let bytes = contents.read(0, BLOCK_SIZE + 100);
        assert_eq!(&bytes[..10], &[7; 10]);
        assert!(bytes[10..].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn writes_past_the_largest_size_are_refused() {
        let gauge = BlockGauge::default();
        let mut contents = Contents::default();
        assert_eq!(contents.write(MAX_FILE_SIZE, b"x", &gauge), Err(TooLarge));
        assert_eq!(contents.write(u64::MAX, b"x", &gauge), Err(TooLarge));
        assert_eq!(contents.set_size(MAX_FILE_SIZE + 1), Err(TooLarge));
        assert_eq!(contents.size(), 0);
    }

    #[derive(Debug, Clone)]
    enum Change {
        Write { offset: u64, data: Vec<u8> },
        SetSize(u64),
        ZeroRange { offset: u64, len: u64 },
    }

    fn change() -> impl Strategy<Value = Change> {
        let offset = 0..(6 * BLOCK);
        prop_oneof![
            (
                offset.clone(),
                prop::collection::vec(any::<u8>(), 0..(2 * BLOCK_SIZE))
            )
                .prop_map(|(offset, data)| Change::Write { offset, data }),
            offset.clone().prop_map(Change::SetSize),
            (offset, 0..(3 * BLOCK)).prop_map(|(offset, len)| Change::ZeroRange { offset, len }),
        ]
    }

    proptest! {
        /// Blocks, holes and shared copies read exactly as one flat byte vector would.
        #[test]
        fn contents_read_as_a_flat_vector_would(changes in prop::collection::vec(change(), 1..40)) {
            let gauge = BlockGauge::default();
            let mut contents = Contents::default();
            let mut flat: Vec<u8> = Vec::new();
            let mut snapshots = Vec::new();
            for change in changes {
                snapshots.push((contents.clone(), flat.clone()));
                match change {
                    Change::Write { offset, data } => {
                        contents.write(offset, &data, &gauge).expect("write");
                        let end = offset as usize + data.len();
                        if flat.len() < end {
                            flat.resize(end, 0);
                        }
                        flat[offset as usize..end].copy_from_slice(&data);
                    }
                    Change::SetSize(size) => {
                        contents.set_size(size).expect("set size");
                        flat.resize(size as usize, 0);
                    }
                    Change::ZeroRange { offset, len } => {
                        contents.zero_range(offset, len);
                        let end = (offset + len).min(flat.len() as u64) as usize;
                        if (offset as usize) < end {
                            flat[offset as usize..end].fill(0);
                        }
                    }
                }
                prop_assert_eq!(contents.size(), flat.len() as u64);
                prop_assert_eq!(contents.read(0, flat.len() + BLOCK_SIZE), flat.clone());
            }
            // Earlier clones kept what they had, whatever was written after them.
            for (snapshot, expected) in &snapshots {
                prop_assert_eq!(&snapshot.read(0, expected.len() + 1), expected);
            }
            drop(snapshots);
            prop_assert_eq!(gauge.bytes(), contents.allocated_bytes());
        }
    }
}
