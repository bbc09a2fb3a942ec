//! A checkpoint's heap state as bytes: the live blocks (address, size,
//! stack) and the per-stack counters, varint-encoded and compressed.
//!
//! Layout before compression (every number a LEB128 varint):
//! `blocks`, then per block in ascending address order `address - previous
//! address` (the first from 0), `size`, `stack`; then `stacks`, then per
//! stack id from 0 `allocs`, `alloc_bytes`, `frees`, `free_bytes`; then,
//! only if not 0, the count of frees of addresses not live (a trace started
//! by an attach).

use crate::heap::{Counters, Heap};
use crate::resolve::Resolver;
use heapreplay_format::varint::{self, Reader};

/// zstd level for checkpoints: they are written during a replay, so fast.
const LEVEL: i32 = 3;

/// The live blocks and the heap's counters, before compression (the
/// layout above; a fold's state too).
pub fn encode_raw(resolver: &Resolver, heap: &Heap) -> Vec<u8> {
    let mut blocks: Vec<(u64, u64, u32)> = resolver.blocks().collect();
    blocks.sort_unstable_by_key(|b| b.0);
    let counters = heap.counters();
    let mut raw = Vec::with_capacity(blocks.len() * 6 + counters.len() * 12 + 20);
    varint::push(&mut raw, blocks.len() as u64);
    let mut previous = 0;
    for (addr, size, stack) in blocks {
        varint::push(&mut raw, addr - previous);
        varint::push(&mut raw, size);
        varint::push(&mut raw, u64::from(stack));
        previous = addr;
    }
    varint::push(&mut raw, counters.len() as u64);
    for c in counters {
        for v in [c.allocs, c.alloc_bytes, c.frees, c.free_bytes] {
            varint::push(&mut raw, v);
        }
    }
    if heap.unseen_frees() > 0 {
        varint::push(&mut raw, heap.unseen_frees());
    }
    raw
}

/// The live blocks and the heap's counters, compressed, and their size
/// before compression.
pub fn encode(resolver: &Resolver, heap: &Heap) -> std::io::Result<(Vec<u8>, usize)> {
    let raw = encode_raw(resolver, heap);
    let mut compressor = zstd::bulk::Compressor::new(LEVEL)?;
    compressor.include_checksum(true)?;
    Ok((compressor.compress(&raw)?, raw.len()))
}

/// The live blocks and the heap, from [`encode`]'s bytes; `None` if they
/// are not a checkpoint's (damaged, or written by something else).
/// `raw_limit` bounds the memory decompression may take.
pub fn decode(bytes: &[u8], raw_limit: usize) -> Option<(Resolver, Heap)> {
    // Decompressed as a stream, so that memory follows what the frame
    // really holds, not what the table claims.
    let mut raw = Vec::new();
    let decoder = zstd::stream::Decoder::new(bytes).ok()?;
    std::io::Read::read_to_end(
        &mut std::io::Read::take(decoder, raw_limit as u64),
        &mut raw,
    )
    .ok()?;
    decode_raw(&raw)
}

/// The live blocks and the heap, from [`encode_raw`]'s bytes; `None` if
/// they are not a state's.
pub fn decode_raw(raw: &[u8]) -> Option<(Resolver, Heap)> {
    let mut r = Reader::new(raw);
    // Each block takes at least 3 bytes, each stack 4: a count beyond what
    // the bytes can hold is damage, not a reason to allocate.
    let blocks = r.u64().ok()?;
    if blocks > raw.len() as u64 / 3 {
        return None;
    }
    let mut addr = 0u64;
    let mut live = Vec::with_capacity(blocks as usize);
    for _ in 0..blocks {
        addr = addr.checked_add(r.u64().ok()?)?;
        let size = r.u64().ok()?;
        let stack = r.u32().ok()?;
        live.push((addr, size, stack));
    }
    let stacks = r.u64().ok()?;
    if stacks > raw.len() as u64 / 4 {
        return None;
    }
    let mut counters = Vec::with_capacity(stacks as usize);
    for _ in 0..stacks {
        counters.push(Counters {
            allocs: r.u64().ok()?,
            alloc_bytes: r.u64().ok()?,
            frees: r.u64().ok()?,
            free_bytes: r.u64().ok()?,
        });
    }
    let unseen_frees = match r.is_empty() {
        true => 0,
        false => r.u64().ok()?,
    };
    if !r.is_empty() {
        return None;
    }
    // Every stack's live blocks are what its counters say is in use: a
    // state that says otherwise (damaged, crafted) would free blocks of
    // stacks that never allocated them.
    let mut inuse = vec![(0u64, 0u64); counters.len()];
    for &(_, size, stack) in &live {
        let c = inuse.get_mut(stack as usize)?;
        c.0 += 1;
        c.1 = c.1.checked_add(size)?;
    }
    let heap = Heap::with_counters(counters)?.with_unseen_frees(unseen_frees);
    let agrees = heap
        .counters()
        .iter()
        .zip(&inuse)
        .all(|(c, &(objects, bytes))| {
            c.allocs - c.frees == objects && c.alloc_bytes - c.free_bytes == bytes
        });
    agrees.then(|| (Resolver::with_blocks(live), heap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapreplay_format::{Event, EventKind};

    #[test]
    fn a_heap_comes_back_as_it_was_and_damage_is_refused() {
        let ev = |seq, kind, addr, size, stack| Event {
            seq,
            addr,
            size,
            stack,
            kind,
        };
        let events = [
            ev(1, EventKind::Alloc, 0x7f00_0000_1000, 24, 3),
            ev(2, EventKind::Alloc, 0x5500_0000_0010, 4096, 1),
            ev(3, EventKind::Free, 0x7f00_0000_1000, 0, 0),
            ev(4, EventKind::Alloc, 0x5500_0000_0080, 7, 2),
        ];
        let mut resolver = Resolver::default();
        let mut heap = Heap::new();
        for e in &events {
            let mut e = *e;
            if let Some(retire) = resolver.resolve(&mut e) {
                heap.apply(&retire);
            }
            heap.apply(&e);
        }
        let (bytes, raw_len) = encode(&resolver, &heap).unwrap();
        let (back, back_heap) = decode(&bytes, raw_len).unwrap();
        let mut a: Vec<_> = resolver.blocks().collect();
        let mut b: Vec<_> = back.blocks().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        assert_eq!(back_heap.counters(), heap.counters());
        assert_eq!(back_heap.totals(), heap.totals());
        assert_eq!(back_heap.unseen_frees(), 0);
        // A free of an address never allocated (a block from before an
        // attach) is counted apart, kept in the state, and frees nothing.
        let without = encode_raw(&resolver, &heap);
        let mut unseen = ev(5, EventKind::Free, 0x6600_0000_0000, 0, 0);
        assert!(resolver.resolve(&mut unseen).is_none());
        heap.apply(&unseen);
        assert_eq!(heap.unseen_frees(), 1);
        let with = encode_raw(&resolver, &heap);
        assert_eq!(&with[..without.len()], &without[..]);
        let (_, h) = decode_raw(&with).unwrap();
        assert_eq!((h.unseen_frees(), h.totals()), (1, heap.totals()));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            if let Some((r, h)) = decode(&bad, raw_len) {
                // A flip zstd's checksum missed must still decode to
                // something consistent, never panic.
                assert!(r.len() <= 4 && h.totals().frees <= h.totals().allocs);
            }
        }
    }
}
