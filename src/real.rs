//! The one place that finds the real functions behind our hooks: `dlsym(RTLD_NEXT, name)`,
//! once per symbol, cached in an atomic that starts out pointing at a resolver, so a hook
//! makes one load and one indirect call. No lock (nothing to deadlock on after `fork()`), no
//! abort when a symbol is missing: the cached function then fails with ENOSYS instead.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};

use libc::{sockaddr, socklen_t};

macro_rules! real_functions {
    ($($name:ident: fn($($arg:ident: $argument:ty),*) -> $result:ty;)*) => {
        $(
            /// The cache behind the accessor of the same name.
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                pub type Real = unsafe extern "C" fn($($argument),*) -> $result;

                /// Holds the real function once found; until then, `first`, which finds it;
                /// when no later object defines it, `missing`.
                pub static CACHE: AtomicPtr<c_void> = AtomicPtr::new(first as Real as *mut c_void);

                pub fn resolve() -> Real {
                    let name = concat!(stringify!($name), "\0");
                    // SAFETY: RTLD_NEXT with a NUL-terminated name; a racing thread may resolve
                    // the same symbol too, which is harmless: both find the same address.
                    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
                    let real = if address.is_null() {
                        missing as Real
                    } else {
                        // SAFETY: the C library's function of this name has exactly this signature.
                        unsafe { core::mem::transmute::<*mut c_void, Real>(address) }
                    };
                    CACHE.store(real as *mut c_void, Ordering::Release);
                    real
                }

                unsafe extern "C" fn first($($arg: $argument),*) -> $result {
                    let errno = crate::errno::Saved::now();
                    let real = resolve();
                    errno.restore();
                    // SAFETY: the caller's own call, forwarded unchanged.
                    unsafe { real($($arg),*) }
                }

                unsafe extern "C" fn missing($(_: $argument),*) -> $result {
                    crate::errno::set(libc::ENOSYS);
                    -1
                }
            }

            #[doc = concat!("The real `", stringify!($name), "` (one that fails with ENOSYS when no later object defines it).")]
            #[inline(always)]
            pub fn $name() -> $name::Real {
                // SAFETY: the cache only ever holds a function of this signature.
                unsafe { core::mem::transmute::<*mut c_void, $name::Real>($name::CACHE.load(Ordering::Acquire)) }
            }
        )*

        /// Resolves every symbol now, at load, so that hooks only read the caches.
        pub fn resolve_all() {
            $(let _ = $name::resolve();)*
        }
    };
}

real_functions! {
    socket: fn(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    connect: fn(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int;
    listen: fn(fd: c_int, backlog: c_int) -> c_int;
    accept: fn(fd: c_int, address: *mut sockaddr, length: *mut socklen_t) -> c_int;
    accept4: fn(fd: c_int, address: *mut sockaddr, length: *mut socklen_t, flags: c_int) -> c_int;
    setsockopt: fn(fd: c_int, level: c_int, name: c_int, value: *const c_void, length: socklen_t) -> c_int;
}
