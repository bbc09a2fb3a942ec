//! Random bytes, truncations and bit flips fed to every decoder: errors and
//! skipped records only; never a panic, a hang or an unbounded allocation.

use heapreplay_format::events::decode as decode_events;
use heapreplay_format::info::{decode_clock, from_bytes};
use heapreplay_format::markers::decode_markers;
use heapreplay_format::reader::scan;
use heapreplay_format::stacks::index_stacks;
use heapreplay_format::synth::{generate, Spec};
use heapreplay_format::{EndInfo, FileInfo, RecordKind};
use proptest::prelude::*;
use std::sync::OnceLock;

/// A valid synthetic trace and the number of events it holds.
fn valid() -> &'static (Vec<u8>, usize) {
    static TRACE: OnceLock<(Vec<u8>, usize)> = OnceLock::new();
    TRACE.get_or_init(|| {
        let mut out = Vec::new();
        let spec = Spec {
            events: 20_000,
            threads: 3,
            stacks: 50,
            live_per_thread: 500,
            seed: 7,
        };
        let n = generate(&spec, &mut out).unwrap();
        (out, n as usize)
    })
}

fn valid_trace() -> &'static [u8] {
    &valid().0
}

fn valid_events() -> usize {
    valid().1
}

/// Reads everything a replay would read; returns the events decoded.
fn read_all(bytes: &[u8]) -> usize {
    let scanned = scan(bytes);
    let mut events = 0;
    for rec in &scanned.records {
        let Ok(raw) = rec.decompress() else { continue };
        let h = rec.header;
        match h.kind {
            RecordKind::Events | RecordKind::Compacted => {
                let mut out = Vec::new();
                if decode_events(&raw, h.first_seq, h.last_seq, h.count, &mut out).is_ok() {
                    events += out.len();
                }
            }
            RecordKind::Stacks => {
                let _ = index_stacks(&raw, h.count, |_, _| {});
            }
            RecordKind::Clock => {
                let _ = decode_clock(&raw, h.count);
            }
            RecordKind::Markers => {
                let _ = decode_markers(&raw, h.count);
            }
            RecordKind::FileInfo => {
                let _ = from_bytes::<FileInfo>(&raw);
            }
            RecordKind::End => {
                let _ = from_bytes::<EndInfo>(&raw);
            }
            RecordKind::Progress => {
                let _ = from_bytes::<heapreplay_format::ProgressInfo>(&raw);
            }
            RecordKind::Threads => {
                let _ = heapreplay_format::info::decode_threads(&raw, h.count);
            }
            RecordKind::Folded => {
                let _ = heapreplay_format::fold::FoldInfo::decode(&raw);
            }
            RecordKind::Mappings => {
                let _ = heapreplay_format::mappings::decode_mappings(
                    &raw,
                    h.first_seq,
                    h.last_seq,
                    h.count,
                );
            }
            RecordKind::Maps => {}
        }
    }
    events
}

#[test]
fn the_valid_trace_reads_whole() {
    assert_eq!(read_all(valid_trace()), valid_events());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_are_not_a_trace(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        read_all(&bytes);
    }

    #[test]
    fn truncated_traces_read_up_to_the_cut(cut in 0usize..100_000) {
        let t = valid_trace();
        let cut = cut % (t.len() + 1);
        prop_assert!(read_all(&t[..cut]) <= valid_events());
    }

    #[test]
    fn flipped_bytes_are_damage(flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..8)) {
        let mut t = valid_trace().to_vec();
        for (at, x) in flips {
            let i = at % t.len();
            t[i] ^= x;
        }
        prop_assert!(read_all(&t) <= valid_events());
    }

    #[test]
    fn garbage_between_records_is_skipped(at in any::<usize>(), junk in proptest::collection::vec(any::<u8>(), 1..300)) {
        let t = valid_trace();
        // Insert at a record boundary found by scanning.
        let scanned = scan(t);
        let rec = scanned.records[at % scanned.records.len()];
        let mut damaged = t[..rec.offset as usize].to_vec();
        damaged.extend_from_slice(&junk);
        damaged.extend_from_slice(&t[rec.offset as usize..]);
        prop_assert_eq!(read_all(&damaged), valid_events());
    }
}
