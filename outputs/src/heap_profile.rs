//! The gperftools heap profile text format ("profile.heap"), byte for byte as
//! gperftools' HeapProfileTable writes it.

use heapreplay_engine::heap::Counters;
use heapreplay_engine::stack_table::StackTable;
use std::collections::HashMap;
use std::io::{self, Write};

/// One bucket line: `%6d: %8d [%6d: %8d] @`. Formatted by hand: with a
/// thousand snapshots of thousands of stacks, `write!`'s padding machinery
/// was a tenth of the whole replay.
fn bucket(out: &mut impl Write, c: &Counters) -> io::Result<()> {
    let mut line = Line::default();
    line.number(c.inuse_objects(), 6);
    line.push(b": ");
    line.number(c.inuse_bytes(), 8);
    line.push(b" [");
    line.number(c.allocs, 6);
    line.push(b": ");
    line.number(c.alloc_bytes, 8);
    line.push(b"] @");
    out.write_all(line.bytes())
}

/// A bucket line being formatted: four numbers of at most 20 digits and
/// their separators always fit.
struct Line {
    buf: [u8; 96],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self {
            buf: [0; 96],
            len: 0,
        }
    }
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// `n` right-aligned in `width` columns, like printf's `%Nd`.
    fn number(&mut self, n: u64, width: usize) {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(n).as_bytes();
        self.push(&b"        "[..width.saturating_sub(text.len())]);
        self.push(text);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The ` 0x...` frame lists of stacks, formatted once and reused by every
/// profile written from the same trace.
pub struct StackText<'a> {
    frames: &'a StackTable,
    text: HashMap<u32, Box<[u8]>>,
}

impl<'a> StackText<'a> {
    /// Formats stacks from `frames` on demand.
    pub fn new(frames: &'a StackTable) -> Self {
        Self {
            frames,
            text: HashMap::new(),
        }
    }

    /// The frame list of stack `id` as written after `@`.
    pub fn get(&mut self, id: u32) -> &[u8] {
        let frames = self.frames;
        self.text.entry(id).or_insert_with(|| {
            let mut line = Vec::new();
            for f in frames.frames(id) {
                // Infallible: writing to a Vec.
                let _ = write!(line, " 0x{f:08x}");
            }
            line.into_boxed_slice()
        })
    }
}

/// The heap's part and the mapped part of a profile, per stack.
pub struct Buckets<'s> {
    /// The heap's totals: the header line counts the heap alone.
    pub totals: &'s Counters,
    /// Memory the program mapped itself (`HEAP_PROFILE_MMAP`), per stack.
    pub mapped: &'s mut [(u32, Counters)],
    /// The heap, per stack.
    pub stacks: &'s mut [(u32, Counters)],
}

/// Writes a complete profile: the header, the mapped memory's lines, one
/// line per stack that has allocated, each part largest in-use bytes first
/// (gperftools writes its mmap lines first too), and the maps.
pub fn write(
    out: &mut impl Write,
    buckets: Buckets<'_>,
    text: &mut StackText<'_>,
    maps: &str,
) -> io::Result<()> {
    write!(out, "heap profile: ")?;
    bucket(out, buckets.totals)?;
    writeln!(out, " heapprofile")?;
    for part in [buckets.mapped, buckets.stacks] {
        part.sort_by(|a, b| {
            b.1.inuse_bytes()
                .cmp(&a.1.inuse_bytes())
                .then(b.1.alloc_bytes.cmp(&a.1.alloc_bytes))
                .then(a.0.cmp(&b.0))
        });
        for (id, c) in part.iter() {
            bucket(out, c)?;
            out.write_all(text.get(*id))?;
            writeln!(out)?;
        }
    }
    write!(out, "\nMAPPED_LIBRARIES:\n{maps}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_gperftools() {
        let totals = Counters {
            allocs: 25000,
            alloc_bytes: 10000600,
            frees: 12499,
            free_bytes: 4999300,
        };
        let mut stacks = vec![
            (
                1,
                Counters {
                    allocs: 16666,
                    alloc_bytes: 1666600,
                    frees: 8333,
                    free_bytes: 833300,
                },
            ),
            (
                2,
                Counters {
                    allocs: 8334,
                    alloc_bytes: 8334000,
                    frees: 4166,
                    free_bytes: 4166000,
                },
            ),
        ];
        let frames = StackTable::from_frames([
            (1, &[0x5607ff2e908a, 0x7fa637c4524a][..]),
            (2, &[0x1234][..]),
        ]);
        let mut out = Vec::new();
        let mut mapped = vec![(
            2,
            Counters {
                allocs: 2,
                alloc_bytes: 8192,
                frees: 1,
                free_bytes: 4096,
            },
        )];
        write(
            &mut out,
            Buckets {
                totals: &totals,
                mapped: &mut mapped,
                stacks: &mut stacks,
            },
            &mut StackText::new(&frames),
            "maps\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "heap profile:  12501:  5001300 [ 25000: 10000600] @ heapprofile\n\
             \x20    1:     4096 [     2:     8192] @ 0x00001234\n\
             \x20 4168:  4168000 [  8334:  8334000] @ 0x00001234\n\
             \x20 8333:   833300 [ 16666:  1666600] @ 0x5607ff2e908a 0x7fa637c4524a\n\
             \nMAPPED_LIBRARIES:\nmaps\n"
        );
    }
}
