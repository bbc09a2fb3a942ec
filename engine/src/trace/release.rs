//! Letting go of the file's pages behind the pass, so resident memory stays
//! bounded by the work in flight, not by the trace's length.

use super::Trace;

impl Trace {
    /// Lets go of the file's pages below every record not decoded yet (the
    /// first `decoded` records, in first-seq order, are done), so resident
    /// memory stays bounded by the work in flight, not the trace's length.
    /// `released` is how far this was done before. The kernel maps pages
    /// around each fault, some behind the point released before, so the
    /// range starts a little earlier each time.
    pub(super) fn release(&self, decoded: usize, released: &mut usize) {
        const FAULT_AROUND: usize = 256 * 1024;
        let below = self
            .low_water
            .get(decoded)
            .copied()
            .unwrap_or(self.bytes.len());
        if below <= *released {
            return;
        }
        let from = released.saturating_sub(FAULT_AROUND);
        // SAFETY: the map is a read-only view of the file: dropping its pages
        // only means a later access reads them from the file again.
        let _ = unsafe {
            self.bytes.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                from,
                below - from,
            )
        };
        *released = below;
    }
}
