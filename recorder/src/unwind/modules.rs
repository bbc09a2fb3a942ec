//! The loaded objects, as framehop modules with their unwind tables.
//!
//! Modules are enumerated with `dl_iterate_phdr`. Each module's
//! `.eh_frame_hdr` and `.eh_frame` are copied out of the process image, so a
//! library unloaded by `dlclose` can never make the unwinder read unmapped
//! memory; modules are kept by (name, load bias) and reused across refreshes,
//! so each object is copied once.

use framehop::x86_64::UnwinderX86_64;
use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A shareable unwinder over every loaded module.
pub type SharedUnwinder = Arc<UnwinderX86_64<Vec<u8>>>;

struct Shared {
    unwinder: SharedUnwinder,
    /// Modules by (name, bias), for reuse.
    built: Vec<(String, u64, Module<Vec<u8>>)>,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
/// Bumped whenever the module set changes; threads compare it to their copy.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The loader's load/unload count when the module set was last built.
static BUILT_AT_LOADS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The current module-set generation.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The current unwinder and its generation, building it on first use.
pub fn current() -> (u64, SharedUnwinder) {
    let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        rebuild(&mut guard);
    }
    let shared = guard.as_ref().expect("built above");
    (generation(), shared.unwinder.clone())
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

struct Raw {
    name: String,
    bias: u64,
    loads: Vec<(u64, u64, u64, bool)>, // vaddr, memsz, filesz, executable
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
            libc::PT_LOAD => raw.loads.push((
                ph.p_vaddr,
                ph.p_memsz,
                ph.p_filesz,
                ph.p_flags & libc::PF_X != 0,
            )),
            libc::PT_GNU_EH_FRAME => raw.eh_frame_hdr = Some((ph.p_vaddr, ph.p_memsz)),
            _ => {}
        }
    }
    out.push(raw);
    0
}

/// Copies `len` bytes of the process image at `avma`.
fn copy(avma: u64, len: u64) -> Vec<u8> {
    // SAFETY: callers pass ranges inside a loaded object's PT_LOAD segments,
    // which stay mapped while the loader lists the object.
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

fn build(raw: &Raw) -> Option<Module<Vec<u8>>> {
    let lo = raw.loads.iter().map(|l| l.0).min()?;
    let hi = raw.loads.iter().map(|l| l.0 + l.1).max()?;
    let mut info = ExplicitModuleSectionInfo::<Vec<u8>> {
        base_svma: 0,
        ..Default::default()
    };
    if let Some(&(vaddr, _, filesz, _)) = raw.loads.iter().find(|l| l.3) {
        info.text_svma = Some(vaddr..vaddr + filesz);
        info.text = Some(copy(raw.bias + vaddr, filesz));
    }
    if let Some((hdr_vaddr, hdr_len)) = raw.eh_frame_hdr {
        let hdr = copy(raw.bias + hdr_vaddr, hdr_len);
        if let Some(eh_avma) = eh_frame_start(&hdr, raw.bias + hdr_vaddr) {
            let eh_vaddr = eh_avma.wrapping_sub(raw.bias);
            // .eh_frame runs at most to the end of the segment that holds it.
            if let Some(&(seg, _, filesz, _)) = raw
                .loads
                .iter()
                .find(|l| eh_vaddr >= l.0 && eh_vaddr < l.0 + l.2)
            {
                let end = seg + filesz;
                info.eh_frame_svma = Some(eh_vaddr..end);
                info.eh_frame = Some(copy(eh_avma, end - eh_vaddr));
                info.eh_frame_hdr_svma = Some(hdr_vaddr..hdr_vaddr + hdr_len);
                info.eh_frame_hdr = Some(hdr);
            }
        }
    }
    Some(Module::new(
        raw.name.clone(),
        raw.bias + lo..raw.bias + hi,
        raw.bias,
        info,
    ))
}

fn rebuild(slot: &mut Option<Shared>) {
    let loads = crate::maps::load_count();
    let mut raws: Vec<Raw> = Vec::new();
    // SAFETY: collect matches the callback contract and writes only `raws`.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&mut raws as *mut Vec<Raw>).cast()) };
    let old = slot.take().map(|s| s.built).unwrap_or_default();
    let mut built = Vec::with_capacity(raws.len());
    let mut unwinder = UnwinderX86_64::new();
    for raw in &raws {
        let module = match old
            .iter()
            .find(|(n, b, _)| *n == raw.name && *b == raw.bias)
        {
            Some((_, _, m)) => Some(m.clone()),
            None => build(raw),
        };
        if let Some(m) = module {
            unwinder.add_module(m.clone());
            built.push((raw.name.clone(), raw.bias, m));
        }
    }
    *slot = Some(Shared {
        unwinder: Arc::new(unwinder),
        built,
    });
    BUILT_AT_LOADS.store(loads, Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
}
