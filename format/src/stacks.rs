//! Stack records: each newly interned stack once, as an id and its return addresses.

use crate::varint::{push, unzigzag, zigzag, Reader, VarintError};

/// The most frames a stack may hold.
pub const MAX_FRAMES: usize = 128;

/// Appends one stack to a stacks payload.
pub fn encode_stack(out: &mut Vec<u8>, id: u32, frames: &[u64]) {
    push(out, u64::from(id));
    push(out, frames.len() as u64);
    let mut prev = 0u64;
    for &f in frames {
        push(out, zigzag(f.wrapping_sub(prev) as i64));
        prev = f;
    }
}

/// Checks `count` stacks and calls `sink(id, offset)` for each, `offset`
/// being where the stack starts in `payload` (for [`decode_stack_at`]).
/// The frames are checked for form, not decoded.
pub fn index_stacks(
    payload: &[u8],
    count: u32,
    mut sink: impl FnMut(u32, usize),
) -> Result<(), VarintError> {
    let mut r = Reader::new(payload);
    for _ in 0..count {
        let at = r.position();
        let id = r.u32()?;
        let n = frame_count(&mut r)?;
        for _ in 0..n {
            r.u64()?;
        }
        sink(id, at);
    }
    if !r.is_empty() {
        return Err(VarintError {
            offset: r.position(),
        });
    }
    Ok(())
}

/// The frames of the one stack that starts at `offset` in a stacks payload.
pub fn decode_stack_at(payload: &[u8], offset: usize) -> Result<Vec<u64>, VarintError> {
    let mut r = Reader::new(payload.get(offset..).ok_or(VarintError { offset })?);
    let mut frames = Vec::new();
    read_stack(&mut r, &mut frames)?;
    Ok(frames)
}

/// Reads a stack's frame count, at most [`MAX_FRAMES`].
fn frame_count(r: &mut Reader<'_>) -> Result<usize, VarintError> {
    let n = r.u64()? as usize;
    if n > MAX_FRAMES {
        return Err(VarintError {
            offset: r.position(),
        });
    }
    Ok(n)
}

/// Reads one stack into `frames`; returns its id.
fn read_stack(r: &mut Reader<'_>, frames: &mut Vec<u64>) -> Result<u32, VarintError> {
    let id = r.u32()?;
    let n = frame_count(r)?;
    frames.clear();
    frames.reserve(n);
    let mut prev = 0u64;
    for _ in 0..n {
        prev = prev.wrapping_add(unzigzag(r.u64()?) as u64);
        frames.push(prev);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_round_trip() {
        let mut out = Vec::new();
        encode_stack(
            &mut out,
            1,
            &[0x5555_0000_1234, 0x7fff_0000_0001, 0x5555_0000_0010],
        );
        encode_stack(&mut out, 2, &[]);
        let mut seen = Vec::new();
        index_stacks(&out, 2, |id, at| {
            seen.push((id, decode_stack_at(&out, at).unwrap()))
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (
                    1,
                    vec![0x5555_0000_1234, 0x7fff_0000_0001, 0x5555_0000_0010]
                ),
                (2, vec![])
            ]
        );
    }
}
