//! Unwind steps: how to get from one frame to its caller, compacted to 64
//! bits, and a global lock-free cache of them by code address.
//!
//! Nearly every frame of compiled x86-64 code follows one shape: the
//! canonical frame address (CFA) is the stack or frame pointer plus an
//! offset, the return address is stored at a fixed offset from the CFA, and
//! the caller's frame pointer is either untouched or stored at a fixed
//! offset. Such a step takes two stack reads to apply. Steps are computed
//! from `.eh_frame` once per address (by any thread) and shared: the cache is
//! an open-addressed table whose slots are claimed with a compare-and-swap
//! and read seqlock-style (key, value, key again), so readers never lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// How to unwind one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// CFA = (rbp if `cfa_bp` else rsp) + `cfa_off`; return address at CFA +
    /// `ra_off`; caller's rbp at CFA + `bp_off` if saved, else unchanged.
    Frame {
        /// The CFA is based on rbp (else rsp).
        cfa_bp: bool,
        /// Offset of the CFA from its base register.
        cfa_off: i32,
        /// Offset of the return address from the CFA.
        ra_off: i32,
        /// Offset of the saved rbp from the CFA, if saved.
        bp_off: Option<i32>,
    },
    /// The outermost frame: its return address is undefined.
    End,
    /// No usable step (no unwind information, or a step of another shape).
    Unknown,
}

impl Step {
    /// The packed word of [`Step::Unknown`].
    pub const UNKNOWN_WORD: u64 = 2;

    /// Packs into 64 bits; `None` if an offset does not fit.
    pub(super) fn pack(self) -> Option<u64> {
        let small = |v: i32| -> Option<u64> {
            (v % 8 == 0 && (-1024..1024).contains(&v)).then_some(((v / 8) as i8 as u8) as u64)
        };
        Some(match self {
            Step::End => 1,
            Step::Unknown => Self::UNKNOWN_WORD,
            Step::Frame {
                cfa_bp,
                cfa_off,
                ra_off,
                bp_off,
            } => {
                let mut w = 3u64;
                w |= u64::from(cfa_bp) << 2;
                w |= (cfa_off as u32 as u64) << 3;
                w |= small(ra_off)? << 35;
                if let Some(b) = bp_off {
                    w |= 1 << 43;
                    w |= small(b)? << 44;
                }
                w
            }
        })
    }

    #[inline(always)]
    pub(super) fn unpack(w: u64) -> Option<Step> {
        match w & 3 {
            0 => None,
            1 => Some(Step::End),
            2 => Some(Step::Unknown),
            _ => {
                let f = FrameWord(w);
                Some(Step::Frame {
                    cfa_bp: f.cfa_bp(),
                    cfa_off: f.cfa_off() as i32,
                    ra_off: f.ra_off() as i32,
                    bp_off: f.bp_off().map(|o| o as i32),
                })
            }
        }
    }
}

/// A packed [`Step::Frame`], read field by field without unpacking.
#[derive(Clone, Copy)]
pub struct FrameWord(u64);

impl FrameWord {
    /// The word as a frame step, if it is one.
    #[inline(always)]
    pub fn new(word: u64) -> Option<Self> {
        (word & 3 == 3).then_some(Self(word))
    }

    /// The CFA is based on rbp (else rsp).
    #[inline(always)]
    pub fn cfa_bp(self) -> bool {
        self.0 & 4 != 0
    }

    /// The CFA's offset from its base register, sign-extended.
    #[inline(always)]
    pub fn cfa_off(self) -> u64 {
        (self.0 >> 3) as u32 as i32 as i64 as u64
    }

    /// The return address's offset from the CFA, sign-extended.
    #[inline(always)]
    pub fn ra_off(self) -> u64 {
        (i64::from((self.0 >> 35) as u8 as i8) * 8) as u64
    }

    /// The saved rbp's offset from the CFA, if rbp was saved.
    #[inline(always)]
    pub fn bp_off(self) -> Option<u64> {
        (self.0 & (1 << 43) != 0).then(|| (i64::from((self.0 >> 44) as u8 as i8) * 8) as u64)
    }
}

const SLOT_BITS: u32 = 16;
const SLOTS: usize = 1 << SLOT_BITS;
const PROBES: usize = 8;
/// Set in a key while its slot is being written.
const BUSY: u64 = 1 << 63;

/// A key and its step side by side: one cache line holds both.
#[repr(C, align(16))]
struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        key: AtomicU64::new(0),
        value: AtomicU64::new(0),
    }
}; SLOTS];

#[inline]
fn home(addr: u64) -> usize {
    (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOT_BITS)) as usize
}

/// The slots `addr` may occupy, in probing order.
#[inline]
fn neighbourhood(addr: u64) -> impl Iterator<Item = &'static Slot> {
    let start = home(addr);
    (0..PROBES).map(move |i| &TABLE[(start + i) & (SLOTS - 1)])
}

/// The cached step for `addr`, if any.
#[inline]
pub fn lookup(addr: u64) -> Option<Step> {
    for entry in neighbourhood(addr) {
        let key = entry.key.load(Ordering::Acquire);
        if key == addr {
            let value = entry.value.load(Ordering::Acquire);
            // The slot may have been reused between the two loads.
            if entry.key.load(Ordering::Acquire) == addr {
                return Step::unpack(value);
            }
            return None;
        }
        if key == 0 {
            return None;
        }
    }
    None
}

/// Caches `step` for `addr` (best effort: a full neighbourhood drops it).
pub fn insert(addr: u64, step: Step) {
    let Some(value) = step.pack() else { return };
    for entry in neighbourhood(addr) {
        let key = entry.key.load(Ordering::Acquire);
        if key == addr {
            return;
        }
        if key == 0
            && entry
                .key
                .compare_exchange(0, addr | BUSY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            entry.value.store(value, Ordering::Release);
            entry.key.store(addr, Ordering::Release);
            return;
        }
    }
}

/// Forgets every step (after a library was unloaded, its addresses may be
/// reused by another). Readers racing with this see misses or fresh steps.
pub fn clear() {
    for entry in TABLE.iter() {
        entry.key.store(BUSY, Ordering::Release);
        entry.value.store(0, Ordering::Release);
        entry.key.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pack_and_unpack() {
        for r in [
            Step::End,
            Step::Unknown,
            Step::Frame {
                cfa_bp: false,
                cfa_off: 8,
                ra_off: -8,
                bp_off: None,
            },
            Step::Frame {
                cfa_bp: true,
                cfa_off: 16,
                ra_off: -8,
                bp_off: Some(-16),
            },
            Step::Frame {
                cfa_bp: false,
                cfa_off: 1 << 20,
                ra_off: -8,
                bp_off: Some(-56),
            },
        ] {
            let word = r.pack().unwrap();
            assert_eq!(Step::unpack(word), Some(r));
            if let Step::Frame {
                cfa_bp,
                cfa_off,
                ra_off,
                bp_off,
            } = r
            {
                let f = FrameWord::new(word).unwrap();
                assert_eq!(f.cfa_bp(), cfa_bp);
                assert_eq!(f.cfa_off() as i64, i64::from(cfa_off));
                assert_eq!(f.ra_off() as i64, i64::from(ra_off));
                assert_eq!(f.bp_off().map(|o| o as i64), bp_off.map(i64::from));
            } else {
                assert!(FrameWord::new(word).is_none());
            }
        }
        assert_eq!(
            Step::Frame {
                cfa_bp: false,
                cfa_off: 8,
                ra_off: -12,
                bp_off: None
            }
            .pack(),
            None
        );
    }

    #[test]
    fn cache_finds_what_it_stored() {
        let r = Step::Frame {
            cfa_bp: false,
            cfa_off: 24,
            ra_off: -8,
            bp_off: None,
        };
        insert(0x5555_0000_1234, r);
        assert_eq!(lookup(0x5555_0000_1234), Some(r));
        assert_eq!(lookup(0x5555_0000_1235), None);
    }
}
