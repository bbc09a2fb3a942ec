//! The loaded objects and their unwind tables.
//!
//! Objects are enumerated with `dl_iterate_phdr`. Each one's `.eh_frame_hdr`
//! and `.eh_frame` are copied out of the process image, so a library
//! unloaded by `dlclose` can never make the unwinder read unmapped memory;
//! objects are kept by (name, load bias) and reused across refreshes, so
//! each is copied once. A step for an address is computed here with gimli
//! and then cached by [`super::steps`].

use super::steps::Step;
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, RegisterRule,
    UnwindContext, UnwindSection, X86_64,
};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One loaded object's unwind tables.
pub struct ModuleData {
    name: String,
    /// Lowest mapped address (absolute).
    lo: u64,
    /// One past the highest mapped address.
    hi: u64,
    /// Load bias: absolute address = bias + address in the file.
    bias: u64,
    hdr: Vec<u8>,
    hdr_svma: u64,
    eh: Vec<u8>,
    eh_svma: u64,
}

/// Every loaded object, sorted by address.
pub type ModuleSet = Arc<Vec<Arc<ModuleData>>>;

/// The per-thread scratch space gimli needs to evaluate CFI.
pub type CfiContext = UnwindContext<usize>;

static SHARED: Mutex<Option<ModuleSet>> = Mutex::new(None);
/// Bumped whenever the module set changes; threads compare it to their copy.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The loader's load/unload count when the module set was last built.
static BUILT_AT_LOADS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The current module-set generation.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The current module set and its generation, building it on first use.
pub fn current() -> (u64, ModuleSet) {
    let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        rebuild(&mut guard);
    }
    (generation(), guard.as_ref().expect("built above").clone())
}

/// Rebuilds the module set if objects were loaded or unloaded since it was
/// built; true if it changed.
pub fn refresh_if_changed() -> bool {
    if crate::maps::load_count() == BUILT_AT_LOADS.load(Ordering::Acquire) {
        return false;
    }
    let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    rebuild(&mut guard);
    true
}

/// The object that holds `addr`.
pub fn find(set: &[Arc<ModuleData>], addr: u64) -> Option<&ModuleData> {
    let i = set.partition_point(|m| m.lo <= addr);
    let m = set.get(i.checked_sub(1)?)?;
    (addr < m.hi).then_some(&**m)
}

impl ModuleData {
    /// The step for `addr` (absolute): the instruction pointer of the
    /// innermost frame, or a return address minus one (the call site).
    pub fn step_for(&self, addr: u64, ctx: &mut CfiContext) -> Step {
        self.compute(addr.wrapping_sub(self.bias), ctx)
            .unwrap_or(Step::Unknown)
    }

    fn compute(&self, svma: u64, ctx: &mut CfiContext) -> Option<Step> {
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(self.hdr_svma)
            .set_eh_frame(self.eh_svma);
        let hdr = EhFrameHdr::new(&self.hdr, LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        let table = hdr.table()?;
        let eh = EhFrame::new(&self.eh, LittleEndian);
        let fde = table
            .fde_for_address(
                &eh,
                &bases,
                svma,
                EhFrame::<EndianSlice<'_, LittleEndian>>::cie_from_offset,
            )
            .ok()?;
        let row = fde.unwind_info_for_address(&eh, &bases, ctx, svma).ok()?;
        let (cfa_bp, cfa_off) = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
                (false, offset)
            }
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
                (true, offset)
            }
            _ => return Some(Step::Unknown),
        };
        let ra_off = match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(o)) => o,
            Some(RegisterRule::Undefined) => return Some(Step::End),
            _ => return Some(Step::Unknown),
        };
        let bp_off = match row.register(X86_64::RBP) {
            None | Some(RegisterRule::SameValue) | Some(RegisterRule::Undefined) => None,
            Some(RegisterRule::Offset(o)) => Some(i32::try_from(o).ok()?),
            _ => return Some(Step::Unknown),
        };
        Some(Step::Frame {
            cfa_bp,
            cfa_off: i32::try_from(cfa_off).ok()?,
            ra_off: i32::try_from(ra_off).ok()?,
            bp_off,
        })
    }
}

struct Raw {
    name: String,
    bias: u64,
    loads: Vec<(u64, u64, u64)>, // vaddr, memsz, filesz
    eh_frame_hdr: Option<(u64, u64)>,
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the loader passes a valid info; data is the &mut Vec<Raw> below.
    let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Raw>)) };
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let mut raw = Raw {
        name,
        bias: info.dlpi_addr,
        loads: Vec::new(),
        eh_frame_hdr: None,
    };
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr has dlpi_phnum entries.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        match ph.p_type {
            libc::PT_LOAD => raw.loads.push((ph.p_vaddr, ph.p_memsz, ph.p_filesz)),
            libc::PT_GNU_EH_FRAME => raw.eh_frame_hdr = Some((ph.p_vaddr, ph.p_memsz)),
            _ => {}
        }
    }
    out.push(raw);
    0
}

/// Copies `len` bytes of the process image at `avma`.
fn copy(avma: u64, len: u64) -> Vec<u8> {
    // SAFETY: callers pass ranges inside a loaded object's PT_LOAD segments
    // (file-backed part), which stay mapped while the loader lists the object.
    unsafe { std::slice::from_raw_parts(avma as *const u8, len as usize) }.to_vec()
}

/// Where `.eh_frame` starts, from the header's encoded `eh_frame_ptr`.
fn eh_frame_start(hdr: &[u8], hdr_avma: u64) -> Option<u64> {
    if hdr.len() < 8 || hdr[0] != 1 {
        return None;
    }
    match hdr[1] {
        // DW_EH_PE_pcrel | DW_EH_PE_sdata4
        0x1b => {
            let v = i32::from_le_bytes(hdr[4..8].try_into().ok()?);
            Some((hdr_avma + 4).wrapping_add(v as i64 as u64))
        }
        // DW_EH_PE_udata4 / DW_EH_PE_sdata4, absolute
        0x03 | 0x0b => Some(u64::from(u32::from_le_bytes(hdr[4..8].try_into().ok()?))),
        // DW_EH_PE_absptr / DW_EH_PE_udata8
        0x00 | 0x04 if hdr.len() >= 12 => Some(u64::from_le_bytes(hdr[4..12].try_into().ok()?)),
        _ => None,
    }
}

fn build(raw: &Raw) -> Option<ModuleData> {
    let lo = raw.loads.iter().map(|l| l.0).min()?;
    let hi = raw.loads.iter().map(|l| l.0 + l.1).max()?;
    let (hdr_vaddr, hdr_len) = raw.eh_frame_hdr?;
    let hdr = copy(raw.bias + hdr_vaddr, hdr_len);
    let eh_avma = eh_frame_start(&hdr, raw.bias + hdr_vaddr)?;
    let eh_vaddr = eh_avma.wrapping_sub(raw.bias);
    // .eh_frame runs at most to the end of the file-backed part of its segment.
    let &(seg, _, filesz) = raw
        .loads
        .iter()
        .find(|l| eh_vaddr >= l.0 && eh_vaddr < l.0 + l.2)?;
    let eh = copy(eh_avma, seg + filesz - eh_vaddr);
    Some(ModuleData {
        name: raw.name.clone(),
        lo: raw.bias + lo,
        hi: raw.bias + hi,
        bias: raw.bias,
        hdr,
        hdr_svma: hdr_vaddr,
        eh,
        eh_svma: eh_vaddr,
    })
}

fn rebuild(slot: &mut Option<ModuleSet>) {
    let loads = crate::maps::load_count();
    let mut raws: Vec<Raw> = Vec::new();
    // SAFETY: collect matches the callback contract and writes only `raws`.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&mut raws as *mut Vec<Raw>).cast()) };
    let old: Vec<Arc<ModuleData>> = slot.take().map(|s| s.to_vec()).unwrap_or_default();
    let mut set: Vec<Arc<ModuleData>> = Vec::with_capacity(raws.len());
    for raw in &raws {
        match old
            .iter()
            .find(|m| m.name == raw.name && m.bias == raw.bias)
        {
            Some(m) => set.push(m.clone()),
            None => set.extend(build(raw).map(Arc::new)),
        }
    }
    // An object that went away may have its addresses reused: drop cached steps.
    if old.iter().any(|m| !set.iter().any(|n| Arc::ptr_eq(m, n))) {
        super::steps::clear();
    }
    set.sort_by_key(|m| m.lo);
    *slot = Some(Arc::new(set));
    BUILT_AT_LOADS.store(loads, Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
}
