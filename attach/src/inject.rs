//! Calling a function inside another process, in one of its threads,
//! with ptrace (x86-64).
//!
//! One thread is seized and interrupted (the others run on). Its general
//! registers, extended state (`NT_X86_XSTATE`) and signal mask are saved.
//! A call is made on its own stack, below the red zone: arguments in
//! registers, return address 0, every asynchronous signal blocked (never
//! the fault signals), `orig_rax` -1 so that the kernel restarts nothing
//! in the middle of it. The call returns to address 0, which faults: that
//! SIGSEGV at rip 0 is the return, and is never delivered. Then
//! everything is put back as it was, an interrupted system call restarts
//! as it would after any signal, and the thread is let go.

use std::io;
use std::time::{Duration, Instant};

const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
const NT_X86_XSTATE: libc::c_int = 0x202;
const PTRACE_EVENT_STOP: i32 = 128;
/// System calls whose EINTR is looked at when a thread is put back.
const EPOLL_WAIT: u64 = 232;
const EPOLL_PWAIT: u64 = 281;
const EPOLL_PWAIT2: u64 = 441;
const RT_SIGTIMEDWAIT: u64 = 128;
/// Bytes below the stack pointer a function may use without moving it.
const RED_ZONE: u64 = 128;
/// Room kept for the extended state (AVX-512 and AMX fit).
const XSTATE_MAX: usize = 16 * 1024;

/// Why a call could not be made or did not return.
#[derive(Debug)]
pub enum CallError {
    /// The thread (or its process) ended.
    Exited,
    /// The call faulted somewhere other than its return (signal, address).
    Faulted(i32, u64),
    /// A ptrace request failed.
    Ptrace(&'static str, io::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Exited => write!(f, "the process exited"),
            CallError::Faulted(sig, at) => {
                write!(f, "the call faulted (signal {sig} at {at:#x})")
            }
            CallError::Ptrace(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

fn ptrace(
    request: libc::c_uint,
    tid: i32,
    addr: usize,
    data: usize,
    what: &'static str,
) -> Result<libc::c_long, CallError> {
    // SAFETY: every request made here passes addresses of live local
    // buffers of the sizes the request expects (or plain numbers).
    let rc = unsafe { libc::ptrace(request, tid, addr, data) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(CallError::Exited);
        }
        return Err(CallError::Ptrace(what, e));
    }
    Ok(rc)
}

/// A ptrace stop of the thread: `Some(signal)` for a signal (or event)
/// stop, `None` if it exited.
fn wait_stop(tid: i32) -> Option<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let rc = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if rc == -1 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        if libc::WIFSTOPPED(status) {
            return Some((libc::WSTOPSIG(status), status >> 16));
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return None;
        }
    }
}

/// A seized thread, stopped, with everything needed to put it back.
pub struct Stopped {
    /// Its id.
    pub tid: i32,
    /// Its registers when it stopped.
    pub regs: libc::user_regs_struct,
    xstate: Vec<u8>,
    sigmask: u64,
    /// True once a call changed the signal mask (putting it back is then
    /// needed; otherwise it is left alone, as setting it would drop a mask
    /// that `ppoll` and the like restore when they return).
    mask_changed: bool,
    let_go: bool,
}

/// Seizes thread `tid` and stops it. `Err` with the ptrace error (EPERM:
/// not permitted) if it cannot.
pub fn stop(tid: i32) -> Result<Stopped, CallError> {
    ptrace(libc::PTRACE_SEIZE, tid, 0, 0, "seize")?;
    let stopped = (|| {
        ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0, "interrupt")?;
        wait_for_interrupt(tid)?;
        let regs = get_regs(tid)?;
        let mut xstate = vec![0u8; XSTATE_MAX];
        let mut iov = libc::iovec {
            iov_base: xstate.as_mut_ptr().cast(),
            iov_len: xstate.len(),
        };
        ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec as usize,
            "read the extended registers",
        )?;
        xstate.truncate(iov.iov_len);
        let mut sigmask = 0u64;
        ptrace(
            PTRACE_GETSIGMASK,
            tid,
            8,
            &mut sigmask as *mut u64 as usize,
            "read the signal mask",
        )?;
        Ok(Stopped {
            tid,
            regs,
            xstate,
            sigmask,
            mask_changed: false,
            let_go: false,
        })
    })();
    if stopped.is_err() {
        // SAFETY: detaching a thread this process seized.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
    }
    stopped
}

/// Waits for the stop PTRACE_INTERRUPT asked for (other stops that come
/// first are let through).
fn wait_for_interrupt(tid: i32) -> Result<(), CallError> {
    loop {
        let (sig, event) = wait_stop(tid).ok_or(CallError::Exited)?;
        if event == PTRACE_EVENT_STOP {
            return Ok(());
        }
        // A signal arriving first: deliver it as it would have been.
        ptrace(libc::PTRACE_CONT, tid, 0, sig as usize, "continue")?;
    }
}

fn get_regs(tid: i32) -> Result<libc::user_regs_struct, CallError> {
    // SAFETY: plain data; all-zero is valid.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace(
        libc::PTRACE_GETREGS,
        tid,
        0,
        &mut regs as *mut _ as usize,
        "read the registers",
    )?;
    Ok(regs)
}

fn set_regs(tid: i32, regs: &libc::user_regs_struct) -> Result<(), CallError> {
    ptrace(
        libc::PTRACE_SETREGS,
        tid,
        0,
        regs as *const _ as usize,
        "write the registers",
    )?;
    Ok(())
}

/// Writes the thread's extended state (`NT_X86_XSTATE`).
fn set_xstate(tid: i32, xstate: &mut [u8]) -> Result<(), CallError> {
    let mut iov = libc::iovec {
        iov_base: xstate.as_mut_ptr().cast(),
        iov_len: xstate.len(),
    };
    ptrace(
        libc::PTRACE_SETREGSET,
        tid,
        NT_X86_XSTATE as usize,
        &mut iov as *mut libc::iovec as usize,
        "write the extended registers",
    )?;
    Ok(())
}

fn set_sigmask(tid: i32, mask: u64) -> Result<(), CallError> {
    ptrace(
        PTRACE_SETSIGMASK,
        tid,
        8,
        &mask as *const u64 as usize,
        "write the signal mask",
    )?;
    Ok(())
}

/// Writes `bytes` at `addr` in the process of `tid`.
fn write_memory(tid: i32, addr: u64, bytes: &[u8]) -> Result<(), CallError> {
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: one local buffer of that length, one remote range.
    let n = unsafe { libc::process_vm_writev(tid, &local, 1, &remote, 1, 0) };
    if n != bytes.len() as isize {
        return Err(CallError::Ptrace(
            "write the call's arguments",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The signals never blocked during a call: a fault there must be seen.
const FAULTS: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];

impl Stopped {
    /// Calls `function(args..)` in the thread, with `text` (NUL added)
    /// copied onto its stack and its address as the first argument if
    /// given; returns what the function returned (rax). `waiting` is told
    /// once if the call takes long.
    pub fn call(
        &mut self,
        function: u64,
        text: Option<&str>,
        args: &[u64],
        waiting: &dyn Fn(),
    ) -> Result<u64, CallError> {
        let mut regs = self.regs;
        let mut sp = (self.regs.rsp - RED_ZONE - 256) & !15;
        let mut argv: Vec<u64> = Vec::new();
        if let Some(text) = text {
            let mut bytes = text.as_bytes().to_vec();
            bytes.push(0);
            sp = (sp - bytes.len() as u64) & !15;
            write_memory(self.tid, sp, &bytes)?;
            argv.push(sp);
        }
        argv.extend_from_slice(args);
        // The return address, 0: at entry the stack is 8 past a multiple of 16.
        sp -= 8;
        write_memory(self.tid, sp, &0u64.to_ne_bytes())?;
        regs.rsp = sp;
        regs.rip = function;
        regs.rax = 0;
        regs.orig_rax = u64::MAX;
        regs.eflags &= !0x400; // the direction flag clear, as calls expect
        let slots = [&mut regs.rdi, &mut regs.rsi, &mut regs.rdx, &mut regs.rcx];
        for (slot, value) in slots.into_iter().zip(&argv) {
            *slot = *value;
        }
        // glibc's SIGCANCEL and SIGSETXID (32, 33) stay open too: a
        // setuid in another thread waits for every thread to take it.
        let mask = FAULTS
            .iter()
            .chain(&[32, 33])
            .fold(u64::MAX, |m, &sig| m & !(1u64 << (sig - 1)));
        self.set_call_xstate()?;
        self.mask_changed = true;
        set_sigmask(self.tid, mask)?;
        set_regs(self.tid, &regs)?;
        ptrace(libc::PTRACE_CONT, self.tid, 0, 0, "continue")?;
        let started = Instant::now();
        let mut told = false;
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let rc = unsafe { libc::waitpid(self.tid, &mut status, libc::__WALL | libc::WNOHANG) };
            if rc == 0 {
                if !told && started.elapsed() > Duration::from_secs(2) {
                    waiting();
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if rc == -1 || libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.let_go = true;
                return Err(CallError::Exited);
            }
            let sig = libc::WSTOPSIG(status);
            if status >> 16 != 0 {
                // A stop of the process (SIGSTOP from someone): go on.
                ptrace(libc::PTRACE_CONT, self.tid, 0, 0, "continue")?;
                continue;
            }
            if sig == libc::SIGSEGV || FAULTS.contains(&sig) {
                let now = get_regs(self.tid)?;
                if sig == libc::SIGSEGV && now.rip == 0 {
                    return Ok(now.rax);
                }
                return Err(CallError::Faulted(sig, now.rip));
            }
            // Signals that cannot be blocked: let them through.
            ptrace(libc::PTRACE_CONT, self.tid, 0, sig as usize, "continue")?;
        }
    }

    /// The extended state a call starts with: the thread's, with the x87
    /// and SSE control words at their defaults (a program that unmasked
    /// floating-point exceptions must not take one inside the call).
    fn set_call_xstate(&mut self) -> Result<(), CallError> {
        let mut xstate = self.xstate.clone();
        if xstate.len() >= 28 {
            xstate[0..2].copy_from_slice(&0x037fu16.to_ne_bytes());
            xstate[24..28].copy_from_slice(&0x1f80u32.to_ne_bytes());
        }
        set_xstate(self.tid, &mut xstate)
    }

    /// Puts the thread back as it was and lets it go.
    pub fn resume(mut self) -> Result<(), CallError> {
        self.let_go = true;
        let result = self.put_back();
        // SAFETY: detaching the thread this process seized.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, 0, 0) };
        result
    }

    fn put_back(&mut self) -> Result<(), CallError> {
        let mut regs = self.regs;
        // A wait the interrupt ended with EINTR (epoll_wait and the like,
        // which the kernel does not restart): one without a time limit is
        // made again, as if nothing had come; an epoll wait with one
        // reports nothing ready (a wait made again would start its limit
        // anew).
        if (regs.orig_rax as i64) >= 0 && regs.rax as i64 == -(libc::EINTR as i64) {
            match (regs.orig_rax, regs.r10) {
                (EPOLL_WAIT | EPOLL_PWAIT, limit) if (limit as i32) >= 0 => regs.rax = 0,
                (EPOLL_PWAIT2 | RT_SIGTIMEDWAIT, limit) if limit != 0 => {}
                _ => {
                    regs.rax = regs.orig_rax;
                    regs.rip -= 2;
                }
            }
        }
        set_regs(self.tid, &regs)?;
        set_xstate(self.tid, &mut self.xstate)?;
        match self.mask_changed {
            true => set_sigmask(self.tid, self.sigmask),
            false => Ok(()),
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.let_go {
            let _ = self.put_back();
            // SAFETY: detaching the thread this process seized.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, 0, 0) };
        }
    }
}
