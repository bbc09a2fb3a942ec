//! Putting the hooks in place in a program that is already running.
//!
//! Preloaded, the recorder's functions come first in the program's symbol
//! lookups. Loaded later (by `heapreplay attach`), they stand in for
//! nothing: every object has already bound its calls to `malloc` and the
//! rest in its global offset table. This module rewrites those entries:
//! each `JUMP_SLOT` and `GLOB_DAT` relocation that names a function the
//! recorder defines ([`HOOKED`]) gets the recorder's function instead, in
//! every loaded object but the dynamic loader, the vdso and the recorder
//! itself (libc included: its own calls to `malloc` go through its table,
//! as they do under `LD_PRELOAD`). Entries inside `PT_GNU_RELRO` are made
//! writable for the write and read-only again after it. The old values are
//! kept, and [`restore`] writes them back wherever an entry still holds the
//! hook.
//!
//! Objects loaded later are patched by the writer thread when it sees a
//! load (within one tick). `dl_iterate_phdr` only copies what it is shown;
//! the work, and the `dlopen(RTLD_NOLOAD)` that keeps an object loaded
//! while its table is written, happen outside the loader's lock.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, MutexGuard};

/// The functions the recorder defines, whose entries are rewritten: every
/// function `librecord.so` exports but its attach entry point (a test
/// holds this list to the library's dynamic symbols).
pub const HOOKED: &[&CStr] = &[
    c"malloc",
    c"free",
    c"calloc",
    c"realloc",
    c"reallocarray",
    c"memalign",
    c"aligned_alloc",
    c"valloc",
    c"pvalloc",
    c"posix_memalign",
    c"malloc_usable_size",
    c"_Znwm",
    c"_Znam",
    c"_ZnwmRKSt9nothrow_t",
    c"_ZnamRKSt9nothrow_t",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
    c"_ZnwmSt11align_val_tRKSt9nothrow_t",
    c"_ZnamSt11align_val_tRKSt9nothrow_t",
    c"_ZdlPv",
    c"_ZdaPv",
    c"_ZdlPvm",
    c"_ZdaPvm",
    c"_ZdlPvRKSt9nothrow_t",
    c"_ZdaPvRKSt9nothrow_t",
    c"_ZdlPvSt11align_val_t",
    c"_ZdaPvSt11align_val_t",
    c"_ZdlPvmSt11align_val_t",
    c"_ZdaPvmSt11align_val_t",
    c"_ZdlPvSt11align_val_tRKSt9nothrow_t",
    c"_ZdaPvSt11align_val_tRKSt9nothrow_t",
    c"mmap",
    c"mmap64",
    c"munmap",
    c"mremap",
    c"sbrk",
    c"brk",
    c"sigaction",
    c"signal",
    c"bsd_signal",
    c"sysv_signal",
    c"_exit",
    c"_Exit",
    c"HeapProfilerStart",
    c"HeapProfilerStop",
    c"HeapProfilerDump",
    c"IsHeapProfilerRunning",
    c"GetHeapProfile",
    c"heapreplay_marker",
];

const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_STRSZ: i64 = 10;
const DT_JMPREL: i64 = 23;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_RELRO: u32 = 0x6474_e552;

#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    _addend: i64,
}

#[repr(C)]
struct Sym {
    name: u32,
    _info: u8,
    _other: u8,
    _shndx: u16,
    _value: u64,
    _size: u64,
}

/// One rewritten entry.
struct Patch {
    /// The object it belongs to (its load bias).
    object: usize,
    slot: usize,
    original: usize,
    hook: usize,
    /// The read-only pages around it (`PT_GNU_RELRO`), if any.
    relro: Option<(usize, usize)>,
}

/// A loaded object, as `dl_iterate_phdr` showed it.
struct Object {
    name: CString,
    bias: usize,
    phdr: *const libc::Elf64_Phdr,
    phnum: usize,
}

/// A hooked function: its name, the recorder's definition, and the one the
/// program's calls are bound to.
#[derive(Clone, Copy)]
struct Hook {
    name: &'static CStr,
    ours: usize,
    real: usize,
}

#[derive(Default)]
struct Patches {
    /// The hooks, found once.
    hooks: Vec<Hook>,
    /// Load biases of the objects patched.
    objects: Vec<usize>,
    entries: Vec<Patch>,
}

static PATCHES: Mutex<Option<Patches>> = Mutex::new(None);

/// The dynamic loader's code (start, end), once the hooks are in place.
/// In a program built without PIE that takes `malloc`'s address, the
/// loader's own allocations (thread-local storage, the recorder's among
/// them) go through the program's PLT entry, and so to the hooks: those
/// must pass them straight on, as recording them would need the very
/// thread-local storage being allocated.
static LOADER: [std::sync::atomic::AtomicUsize; 2] = [
    std::sync::atomic::AtomicUsize::new(0),
    std::sync::atomic::AtomicUsize::new(0),
];

/// True if a hook's caller, whose return address is at `sp`, is the
/// dynamic loader.
#[inline]
pub fn from_loader(sp: u64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    // SAFETY: `sp` is the stack pointer at the hook's entry, where the
    // call placed the return address.
    let ret = unsafe { *(sp as *const usize) };
    ret >= LOADER[0].load(Relaxed) && ret < LOADER[1].load(Relaxed)
}

/// Notes where the dynamic loader's code is (see [`LOADER`]).
fn note_loader(objects: &[Object]) {
    const PF_X: u32 = 1;
    for o in objects.iter().filter(|o| is_loader(&o.name)) {
        // SAFETY: the loader's program headers of a loaded object.
        let phdrs = unsafe { std::slice::from_raw_parts(o.phdr, o.phnum) };
        for p in phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & PF_X != 0)
        {
            let start = o.bias + p.p_vaddr as usize;
            LOADER[1].store(
                start + p.p_memsz as usize,
                std::sync::atomic::Ordering::Relaxed,
            );
            LOADER[0].store(start, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// True for the dynamic loader's file name.
fn is_loader(name: &CStr) -> bool {
    let name = name.to_bytes();
    let file = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
    file.starts_with(b"ld-linux") || file.starts_with(b"ld64.so")
}

fn patches() -> MutexGuard<'static, Option<Patches>> {
    PATCHES.lock().unwrap_or_else(|e| e.into_inner())
}

/// This library's load bias.
fn own_base() -> usize {
    // SAFETY: dladdr fills `info` for an address of this library.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        libc::dladdr(own_base as *const c_void, &mut info);
        info.dli_fbase as usize
    }
}

/// The recorder's own definition of each hooked name, with the real one.
fn find_hooks() -> Vec<Hook> {
    // SAFETY: dladdr and dlopen(RTLD_NOLOAD) of this very library (already
    // loaded: the call only takes a reference), then dlsym on that handle,
    // which finds this library's own definitions first.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(own_base as *const c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return Vec::new();
        }
        let handle = libc::dlopen(info.dli_fname, libc::RTLD_NOLOAD | libc::RTLD_LAZY);
        if handle.is_null() {
            return Vec::new();
        }
        let base = info.dli_fbase as usize;
        let hooks = HOOKED
            .iter()
            .filter_map(|&name| {
                let f = libc::dlsym(handle, name.as_ptr()) as usize;
                let mut at: libc::Dl_info = std::mem::zeroed();
                let ours = f != 0
                    && libc::dladdr(f as *const c_void, &mut at) != 0
                    && at.dli_fbase as usize == base;
                ours.then(|| Hook {
                    name,
                    ours: f,
                    real: crate::real::definition(name) as usize,
                })
            })
            .collect();
        libc::dlclose(handle);
        hooks
    }
}

/// The loaded objects whose tables may be rewritten (and, with
/// `with_loader`, the dynamic loader too).
fn loaded_objects_with(with_loader: bool) -> Vec<Object> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the Vec passed below; `info` is valid for the
        // call, its name NUL-terminated or NULL.
        unsafe {
            let out = &mut *data.cast::<Vec<Object>>();
            let info = &*info;
            let name = match info.dlpi_name.is_null() {
                true => CString::default(),
                false => CStr::from_ptr(info.dlpi_name).to_owned(),
            };
            out.push(Object {
                name,
                bias: info.dlpi_addr as usize,
                phdr: info.dlpi_phdr,
                phnum: info.dlpi_phnum as usize,
            });
        }
        0
    }
    let mut out: Vec<Object> = Vec::new();
    // SAFETY: `visit` only copies what it is shown into `out`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut out as *mut Vec<Object>).cast()) };
    let own = own_base();
    out.retain(|o| {
        let name = o.name.to_bytes();
        let file = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
        o.bias != own
            && (with_loader || !is_loader(&o.name))
            && !file.starts_with(b"linux-vdso")
            && !file.starts_with(b"linux-gate")
    });
    out
}

/// The loaded objects whose tables may be rewritten.
fn loaded_objects() -> Vec<Object> {
    loaded_objects_with(false)
}

/// Keeps `object` loaded while its table is read or written; `None` if it
/// has been unloaded since it was seen. The program itself (no name) is
/// always there.
struct Held(*mut c_void);

extern "C" {
    fn dlinfo(handle: *mut c_void, request: c_int, info: *mut c_void) -> c_int;
}

/// `dlinfo`'s request for an object's link map, whose first field is its
/// load bias.
const RTLD_DI_LINKMAP: c_int = 2;

impl Held {
    /// `None` if the object is no longer loaded, or what its name now
    /// names is another object (unloaded and loaded again elsewhere).
    fn take(object: &Object) -> Option<Held> {
        if object.name.is_empty() {
            return Some(Held(std::ptr::null_mut()));
        }
        // SAFETY: a NOLOAD lookup of a name the loader gave.
        let handle =
            unsafe { libc::dlopen(object.name.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        if handle.is_null() {
            return None;
        }
        let held = Held(handle);
        let mut map: *const usize = std::ptr::null();
        // SAFETY: RTLD_DI_LINKMAP writes the handle's link map, whose
        // first field (l_addr) is the object's load bias.
        let bias = unsafe {
            match dlinfo(
                handle,
                RTLD_DI_LINKMAP,
                (&mut map as *mut *const usize).cast(),
            ) {
                0 if !map.is_null() => *map,
                _ => return None,
            }
        };
        (bias == object.bias).then_some(held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the reference taken in `take`.
            unsafe { libc::dlclose(self.0) };
        }
    }
}

/// An address the dynamic section gives: relocated by the loader already
/// (glibc does it in place), or still relative to the bias.
fn dyn_addr(bias: usize, value: u64) -> usize {
    let value = value as usize;
    if value < bias {
        value + bias
    } else {
        value
    }
}

/// The entries of `object` that name a hooked function: (slot, hook).
///
/// # Safety
/// `object` is loaded (held) and its program headers are the loader's.
unsafe fn entries(object: &Object, hooks: &[Hook]) -> Vec<(usize, Hook)> {
    let mut out = Vec::new();
    // SAFETY: the loader's program headers of a loaded object.
    let phdrs = unsafe { std::slice::from_raw_parts(object.phdr, object.phnum) };
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else {
        return out;
    };
    let (mut symtab, mut strtab, mut strsz) = (0, 0, 0);
    let mut tables = [(0usize, 0usize); 2];
    let mut at = (object.bias + dynamic.p_vaddr as usize) as *const Dyn;
    // SAFETY: the dynamic section of a loaded object ends with DT_NULL.
    unsafe {
        while (*at).tag != DT_NULL {
            let d = &*at;
            match d.tag {
                DT_SYMTAB => symtab = dyn_addr(object.bias, d.val),
                DT_STRTAB => strtab = dyn_addr(object.bias, d.val),
                DT_STRSZ => strsz = d.val as usize,
                DT_JMPREL => tables[0].0 = dyn_addr(object.bias, d.val),
                DT_PLTRELSZ => tables[0].1 = d.val as usize,
                DT_RELA => tables[1].0 = dyn_addr(object.bias, d.val),
                DT_RELASZ => tables[1].1 = d.val as usize,
                _ => {}
            }
            at = at.add(1);
        }
    }
    if symtab == 0 || strtab == 0 {
        return out;
    }
    for (start, size) in tables {
        if start == 0 {
            continue;
        }
        let count = size / std::mem::size_of::<Rela>();
        // SAFETY: the loader's relocation table of a loaded object.
        let relas = unsafe { std::slice::from_raw_parts(start as *const Rela, count) };
        for r in relas {
            let kind = r.info as u32;
            if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                continue;
            }
            let sym = (r.info >> 32) as usize;
            // SAFETY: symbol `sym` of the object's symbol table, its name
            // within the string table (checked against its size).
            let name = unsafe {
                let name = (*(symtab as *const Sym).add(sym)).name as usize;
                if name >= strsz {
                    continue;
                }
                CStr::from_ptr((strtab + name) as *const c_char)
            };
            if let Some(&hook) = hooks.iter().find(|h| h.name == name) {
                out.push((object.bias + r.offset as usize, hook));
            }
        }
    }
    out
}

/// The load bias of the allocator underneath, unless it is libc's: its
/// calls to itself and to `mmap` are made holding its locks, and must
/// reach it directly (libc's own calls to `malloc` are the program's, and
/// go through the hooks as under `LD_PRELOAD`).
fn allocator_base(hooks: &[Hook]) -> Option<usize> {
    let malloc = hooks.iter().find(|h| h.name == c"malloc")?.real;
    // SAFETY: dladdr fills `info` for an address; the name it gives is
    // NUL-terminated and lives while the object is loaded.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(malloc as *const c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = CStr::from_ptr(info.dli_fname).to_bytes();
        let libc = name.ends_with(b"/libc.so.6") || name == b"libc.so.6";
        (!libc).then_some(info.dli_fbase as usize)
    }
}

/// True if `object` is the one mapped first at `base` (`dladdr`'s
/// `dli_fbase`: where its lowest segment's page starts, which is its load
/// bias only if that segment's address is 0).
fn mapped_at(object: &Object, base: usize) -> bool {
    extent(object).start & !(page_size() - 1) == base
}

/// True if `f` is `object`'s own definition of `name` (not a PLT entry).
fn defines(f: usize, name: &CStr) -> bool {
    // SAFETY: dladdr fills `info` for an address; the names it gives are
    // NUL-terminated and live while the object is loaded.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        libc::dladdr(f as *const c_void, &mut info) != 0
            && !info.dli_sname.is_null()
            && info.dli_saddr as usize == f
            && CStr::from_ptr(info.dli_sname) == name
    }
}

/// The addresses `object` is loaded at.
fn extent(object: &Object) -> std::ops::Range<usize> {
    // SAFETY: as in `entries`.
    let phdrs = unsafe { std::slice::from_raw_parts(object.phdr, object.phnum) };
    let loads = phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
    let start = loads.clone().map(|p| p.p_vaddr).min().unwrap_or(0) as usize;
    let end = loads.map(|p| p.p_vaddr + p.p_memsz).max().unwrap_or(0) as usize;
    object.bias + start..object.bias + end
}

/// The pages of `object` the loader made read-only after relocating.
fn relro(object: &Object) -> Option<(usize, usize)> {
    // SAFETY: as in `entries`.
    let phdrs = unsafe { std::slice::from_raw_parts(object.phdr, object.phnum) };
    let p = phdrs.iter().find(|p| p.p_type == PT_GNU_RELRO)?;
    let page = page_size();
    let start = (object.bias + p.p_vaddr as usize) & !(page - 1);
    let end = (object.bias + (p.p_vaddr + p.p_memsz) as usize) & !(page - 1);
    (end > start).then_some((start, end - start))
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize).max(4096)
}

/// Writes `value` into `slot`, through read-only pages if it is in them.
/// False if the pages could not be made writable.
fn write_slot(slot: usize, value: usize, relro: Option<(usize, usize)>) -> bool {
    let inside = relro.filter(|&(start, len)| slot >= start && slot < start + len);
    let page = page_size();
    if inside.is_some() {
        // SAFETY: the page holding the slot, part of a loaded object.
        let rc = unsafe {
            libc::mprotect(
                (slot & !(page - 1)) as *mut c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return false;
        }
    }
    // SAFETY: an aligned table entry of a loaded object, now writable; an
    // atomic store, as other threads may be calling through it.
    unsafe {
        (*(slot as *const std::sync::atomic::AtomicUsize))
            .store(value, std::sync::atomic::Ordering::SeqCst)
    };
    if inside.is_some() {
        // SAFETY: as above; read-only again, as the loader left it.
        unsafe { libc::mprotect((slot & !(page - 1)) as *mut c_void, page, libc::PROT_READ) };
    }
    true
}

/// Rewrites the entries of every loaded object not patched yet; returns
/// how many entries it rewrote.
pub fn patch_loaded() -> usize {
    let mut guard = patches();
    let state = guard.get_or_insert_with(Patches::default);
    if state.hooks.is_empty() {
        state.hooks = find_hooks();
        note_loader(&loaded_objects_with(true));
    }
    let loaded = loaded_objects();
    // Objects unloaded since: their entries are gone with them.
    state
        .objects
        .retain(|&b| loaded.iter().any(|o| o.bias == b));
    state
        .entries
        .retain(|p| loaded.iter().any(|o| o.bias == p.object));
    let allocator = allocator_base(&state.hooks);
    let mut patched = 0;
    for object in loaded {
        if state.objects.contains(&object.bias)
            || allocator.is_some_and(|base| mapped_at(&object, base))
        {
            continue;
        }
        let Some(_held) = Held::take(&object) else {
            continue;
        };
        state.objects.push(object.bias);
        let relro = relro(&object);
        let own = extent(&object);
        // SAFETY: the object is held loaded; its headers are the loader's.
        for (slot, hook) in unsafe { entries(&object, &state.hooks) } {
            // SAFETY: an aligned table entry of a held object.
            let original = unsafe { *(slot as *const usize) };
            // Only entries bound to the real definition, or not bound yet
            // (lazily: to the object's own PLT): one bound elsewhere, or to
            // the object's own definition (a library's own allocator,
            // RTLD_DEEPBIND), would free through the wrong allocator.
            let bound = original != 0
                && (original == hook.real
                    || (own.contains(&original) && !defines(original, hook.name)));
            if !bound || original == hook.ours || !write_slot(slot, hook.ours, relro) {
                continue;
            }
            let hook = hook.ours;
            state.entries.push(Patch {
                object: object.bias,
                slot,
                original,
                hook,
                relro,
            });
            patched += 1;
        }
    }
    patched
}

/// Writes every old value back where the entry still holds the hook (the
/// program may have changed it since); returns how many it wrote.
pub fn restore() -> usize {
    let mut guard = patches();
    let Some(state) = guard.as_mut() else {
        return 0;
    };
    let mut restored = 0;
    for object in loaded_objects() {
        if !state.entries.iter().any(|p| p.object == object.bias) {
            continue;
        }
        let Some(_held) = Held::take(&object) else {
            continue;
        };
        restored += put_back(state.entries.iter().filter(|p| p.object == object.bias));
    }
    state.entries.clear();
    state.objects.clear();
    restored
}

/// Writes back the old values of `entries` that still hold the hook, last
/// first; returns how many it wrote.
fn put_back<'a>(entries: impl DoubleEndedIterator<Item = &'a Patch>) -> usize {
    let mut restored = 0;
    for p in entries.rev() {
        // SAFETY: an aligned table entry of an object kept loaded.
        let now = unsafe { *(p.slot as *const usize) };
        if now == p.hook && write_slot(p.slot, p.original, p.relro) {
            restored += 1;
        }
    }
    restored
}

/// The patches held locked across `fork`.
pub struct ForkLock(MutexGuard<'static, Option<Patches>>);

/// Locks the patches before `fork` (last: nothing holding them takes
/// another recorder lock).
pub fn lock_for_fork() -> ForkLock {
    ForkLock(patches())
}

impl ForkLock {
    /// In the child of an attached process: puts the old entries back (the
    /// child is not recorded).
    pub fn restore_in_child(&mut self) {
        // The child is a copy with one thread: every object patched in the
        // parent is there, and nothing can unload it meanwhile.
        if let Some(state) = self.0.take() {
            put_back(state.entries.iter());
        }
    }
}
