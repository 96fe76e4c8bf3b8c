//! The one place that finds the real functions behind our hooks: `dlsym(RTLD_NEXT, name)`,
//! once per symbol, cached in an atomic that starts out pointing at a resolver, so a hook
//! makes one load and one indirect call. No lock (nothing to deadlock on after `fork()`), no
//! abort when a symbol is missing: the hook then fails with ENOSYS, and dlsym is not asked
//! again.

use core::ffi::{CStr, c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use libc::{sockaddr, socklen_t};

/// Bit `index` set: no later object defines that function.
static MISSING: AtomicU32 = AtomicU32::new(0);

/// Finds the real function `name` and caches it; null when no later object defines it. One
/// copy for every function: each resolver (`first`) is only this call and a jump.
#[cold]
#[inline(never)]
fn resolve(index: u32, name: &CStr, cache: &AtomicPtr<c_void>) -> *mut c_void {
    let bit = 1u32.checked_shl(index).unwrap_or(0);
    if MISSING.load(Ordering::Acquire) & bit != 0 {
        return core::ptr::null_mut();
    }
    let errno = crate::errno::Saved::now();
    // SAFETY: RTLD_NEXT with a NUL-terminated name; a racing thread may resolve the same
    // symbol too, which is harmless: both find the same address.
    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    errno.restore();
    if address.is_null() {
        MISSING.fetch_or(bit, Ordering::AcqRel);
    } else {
        cache.store(address, Ordering::Release);
    }
    address
}

/// What a hook returns when its real function does not exist: -1, ENOSYS.
#[cold]
#[inline(never)]
fn missing() -> c_int {
    crate::errno::set(libc::ENOSYS);
    -1
}

macro_rules! real_functions {
    ($($index:literal $name:ident: fn($($arg:ident: $argument:ty),*) -> $result:ty;)*) => {
        $(
            /// The cache behind the accessor of the same name.
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                pub type Real = unsafe extern "C" fn($($argument),*) -> $result;

                pub const NAME: &CStr = match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("a symbol name with a NUL"),
                };

                /// Holds the real function once found; until then (and when no later object
                /// defines it), `first`, which finds it.
                pub static CACHE: AtomicPtr<c_void> = AtomicPtr::new(first as Real as *mut c_void);

                unsafe extern "C" fn first($($arg: $argument),*) -> $result {
                    let address = resolve($index, NAME, &CACHE);
                    if address.is_null() {
                        return missing();
                    }
                    // SAFETY: dlsym's answer for this name: the C library's function of this
                    // name, which has exactly this signature.
                    let real = unsafe { core::mem::transmute::<*mut c_void, Real>(address) };
                    // SAFETY: the caller's own call, forwarded unchanged.
                    unsafe { real($($arg),*) }
                }
            }

            #[doc = concat!("The real `", stringify!($name), "` (a resolver until it is found; one that fails with ENOSYS when no later object defines it).")]
            #[inline(always)]
            pub fn $name() -> $name::Real {
                // SAFETY: the cache only ever holds a function of this signature.
                unsafe { core::mem::transmute::<*mut c_void, $name::Real>($name::CACHE.load(Ordering::Acquire)) }
            }
        )*

        /// Resolves every symbol now, at load, so that hooks only read the caches.
        pub fn resolve_all() {
            $(resolve($index, $name::NAME, &$name::CACHE);)*
        }
    };
}

real_functions! {
    0 socket: fn(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    1 connect: fn(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int;
    2 listen: fn(fd: c_int, backlog: c_int) -> c_int;
    3 accept: fn(fd: c_int, address: *mut sockaddr, length: *mut socklen_t) -> c_int;
    4 accept4: fn(fd: c_int, address: *mut sockaddr, length: *mut socklen_t, flags: c_int) -> c_int;
    5 setsockopt: fn(fd: c_int, level: c_int, name: c_int, value: *const c_void, length: socklen_t) -> c_int;
}
