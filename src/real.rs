//! The one place that finds the real functions behind our hooks: `dlsym(RTLD_NEXT, name)`,
//! once per symbol, at load (or at a hook's first call, if that comes before the load), cached
//! in an atomic, so a hook makes one load, one test and one indirect call. No lock (nothing to
//! deadlock on after `fork()`), no abort when a symbol is missing: the hook then fails with
//! ENOSYS (`missing`), and dlsym is not asked again.

use core::ffi::{CStr, c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};

use libc::{sockaddr, socklen_t};

/// One cache per real function: null until resolved, then its address or `MISSING`.
static CACHE: [AtomicPtr<c_void>; NAMES.len()] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; NAMES.len()];

/// Marks a symbol no later object defines (an address no function has: this static's).
static MISSING_MARK: u8 = 0;

fn missing_mark() -> *mut c_void {
    (&raw const MISSING_MARK).cast_mut().cast()
}

/// The address of the real function `index` names, or `missing_mark()`; dlsym only while the
/// cache holds none. (Cold, and one copy for every function: the hooks keep only the test.)
#[cold]
#[inline(never)]
fn resolve(index: usize) -> *mut c_void {
    let (Some(cache), Some(name)) = (CACHE.get(index), NAMES.get(index)) else {
        return missing_mark();
    };
    let cached = cache.load(Ordering::Acquire);
    if !cached.is_null() {
        return cached;
    }
    let errno = crate::errno::Saved::now();
    // SAFETY: RTLD_NEXT with a NUL-terminated name; a racing thread may resolve the same
    // symbol too, which is harmless: both find the same address.
    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    errno.restore();
    let address = if address.is_null() {
        missing_mark()
    } else {
        address
    };
    cache.store(address, Ordering::Release);
    address
}

/// What a hook returns when its real function does not exist: -1, ENOSYS.
#[cold]
#[inline(never)]
pub fn missing() -> c_int {
    crate::errno::set(libc::ENOSYS);
    -1
}

/// Resolves every symbol now, at load, so that hooks only read the caches.
pub fn resolve_all() {
    for index in 0..NAMES.len() {
        resolve(index);
    }
}

macro_rules! real_functions {
    ($($index:literal $name:ident: fn($($argument:ty),*) -> $result:ty;)*) => {
        const NAMES: [&CStr; [$($index),*].len()] = [$(
            match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                Ok(name) => name,
                Err(_) => panic!("a symbol name with a NUL"),
            }
        ),*];

        $(
            #[doc = concat!("The real `", stringify!($name), "`; `None` when no later object defines it.")]
            #[inline(always)]
            pub fn $name() -> Option<unsafe extern "C" fn($($argument),*) -> $result> {
                let address = CACHE.get($index)?.load(Ordering::Acquire);
                let address = if address.is_null() {
                    resolve($index)
                } else {
                    address
                };
                if address == missing_mark() {
                    return None;
                }
                // SAFETY: the cache holds only dlsym's answer for this name: the C library's
                // function of this name, which has exactly this signature.
                Some(unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($argument),*) -> $result>(address) })
            }
        )*

        /// The real functions once resolved, without resolving: for a hook whose common case
        /// is only a jump to the real function (no call of its own, so no frame to set up).
        /// Only setsockopt's hook is such a hook today.
        #[allow(dead_code)]
        pub mod resolved {
            use super::*;

            $(
                #[doc = concat!("The real `", stringify!($name), "` when it is resolved and exists.")]
                #[inline(always)]
                pub fn $name() -> Option<unsafe extern "C" fn($($argument),*) -> $result> {
                    let address = CACHE.get($index)?.load(Ordering::Acquire);
                    if address.is_null() || address == missing_mark() {
                        return None;
                    }
                    // SAFETY: as in the resolving accessor.
                    Some(unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($argument),*) -> $result>(address) })
                }
            )*
        }
    };
}

real_functions! {
    0 socket: fn(c_int, c_int, c_int) -> c_int;
    1 connect: fn(c_int, *const sockaddr, socklen_t) -> c_int;
    2 listen: fn(c_int, c_int) -> c_int;
    3 accept: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
    4 accept4: fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
    5 setsockopt: fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;
}
