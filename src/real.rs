//! The one place that finds the real functions behind our hooks: `dlsym(RTLD_NEXT, name)`,
//! once per symbol, cached in an atomic. No lock (nothing to deadlock on after `fork()`), no
//! abort when a symbol is missing: the hook then fails with ENOSYS instead.

use std::ffi::{CStr, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{sockaddr, socklen_t};

/// Cached as the address, or this marker once dlsym said the symbol does not exist.
const MISSING: *mut c_void = usize::MAX as *mut c_void;

fn resolve(cache: &AtomicPtr<c_void>, name: &CStr) -> Option<*mut c_void> {
    let mut address = cache.load(Ordering::Acquire);
    if address.is_null() {
        // SAFETY: RTLD_NEXT with a NUL-terminated name; a racing thread may resolve the same
        // symbol too, which is harmless: both find the same address.
        address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        if address.is_null() {
            address = MISSING;
        }
        cache.store(address, Ordering::Release);
    }
    (address != MISSING).then_some(address)
}

macro_rules! real_functions {
    ($($name:ident: fn($($argument:ty),*) -> $result:ty;)*) => {
        $(
            #[doc = concat!("The real `", stringify!($name), "`, or `None` when no later object defines it.")]
            pub fn $name() -> Option<unsafe extern "C" fn($($argument),*) -> $result> {
                static CACHE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
                let name = const {
                    match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                        Ok(name) => name,
                        Err(_) => panic!("symbol name with a NUL"),
                    }
                };
                let address = resolve(&CACHE, name)?;
                // SAFETY: the C library's function of this name has exactly this signature.
                Some(unsafe {
                    std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($argument),*) -> $result>(address)
                })
            }
        )*

        /// Resolves every symbol now, at load, so that hooks only read the caches.
        pub fn resolve_all() {
            $(let _ = $name();)*
        }
    };
}

real_functions! {
    socket: fn(c_int, c_int, c_int) -> c_int;
    connect: fn(c_int, *const sockaddr, socklen_t) -> c_int;
    listen: fn(c_int, c_int) -> c_int;
    accept: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
    accept4: fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
    setsockopt: fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;
    close: fn(c_int) -> c_int;
    dup2: fn(c_int, c_int) -> c_int;
    dup3: fn(c_int, c_int, c_int) -> c_int;
}
