//! The one init path: run by the load-time constructor, or by the first hook when another
//! library's constructor makes a socket before ours has run. The environment is read exactly
//! once. A state word is the recursion guard and the publication: hooks pass straight through
//! while init is under way (on any thread) and read the runtime without a lock once it is.

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, Ordering};

use keepalive_config::show::Show;
use keepalive_config::text::Verbatim;
use keepalive_config::{
    Config, KernelDefaults, LogLevel, NetRange, NetSet, Override, PREFIX, Parsed, Plan, PortSet,
    SocketOption,
};

use crate::{errno, log, process, real, sys};

/// Everything a hook needs, fixed at load.
pub struct Runtime {
    pub log: LogLevel,
    pub policy: Override,
    /// The options to set and their values.
    pub plan: Plan,
    pub ports: Option<&'static PortSet>,
    pub nets: Option<NetSet<'static>>,
    /// The option whose value tells, on an accepted socket, that its listener was configured.
    pub witness: SocketOption,
    /// socket() may configure a TCP socket at once, with `steps` and nothing else: no address
    /// filter, no debug log.
    pub quick: bool,
    /// The plan with each option's level and name looked up once.
    steps: [RawStep; SocketOption::COUNT],
    step_count: usize,
}

/// One setsockopt of the plan, ready for the system call.
#[derive(Clone, Copy)]
pub struct RawStep {
    pub level: c_int,
    pub name: c_int,
    pub value: c_int,
}

impl Runtime {
    /// Whether the program's own setsockopt of `option` needs any work: an override, or a note
    /// of it (see `policy::after_setsockopt`). Under the default KEEPALIVE_OVERRIDE=no without
    /// filters a note only matters for SO_KEEPALIVE when it is the accept witness (no timing
    /// configured): a listener whose keepalive the program turned off then tells its accepted
    /// sockets so; otherwise the witness timing they inherit does. Redis' four options on
    /// every client then go straight to the real function (`policy::may_watch_setsockopt`).
    #[inline(always)]
    pub fn watches(&self, option: SocketOption) -> bool {
        self.policy != Override::No || self.notes(option)
    }

    /// Whether the program's setsockopt of `option` is noted against the socket's cookie.
    #[inline(always)]
    pub fn notes(&self, option: SocketOption) -> bool {
        self.filters_by_address()
            || (option == SocketOption::KeepAlive && self.witness == SocketOption::KeepAlive)
    }

    /// Whether any socket's record can be kept (`notes`, or a role under KEEPALIVE_PORTS):
    /// then the table for them is mapped at load (src/sockets.rs).
    pub fn keeps_records(&self) -> bool {
        self.filters_by_address() || self.witness == SocketOption::KeepAlive
    }

    pub fn steps(&self) -> &[RawStep] {
        self.steps.get(..self.step_count).unwrap_or(&[])
    }

    pub fn filters_by_address(&self) -> bool {
        self.ports.is_some() || self.nets.is_some()
    }

    pub fn targeting(&self) -> keepalive_config::Targeting<'static> {
        keepalive_config::Targeting {
            ports: self.ports,
            nets: self.nets,
        }
    }
}

const UNLOADED: u8 = 0;
const LOADING: u8 = 1;
const ACTIVE: u8 = 2;
const INACTIVE: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNLOADED);

/// The runtime, published here too when it is `quick`: socket()'s common case is one load.
static QUICK: AtomicPtr<Runtime> = AtomicPtr::new(core::ptr::null_mut());

/// A static written once, by the one thread that moved STATE from UNLOADED to LOADING, before
/// it publishes ACTIVE; read only after ACTIVE is seen.
struct WriteOnce<T>(UnsafeCell<T>);

// SAFETY: written by one thread before publication (Release), read after it (Acquire).
unsafe impl<T> Sync for WriteOnce<T> {}

static RUNTIME: WriteOnce<MaybeUninit<Runtime>> = WriteOnce(UnsafeCell::new(MaybeUninit::uninit()));

// What only some configurations need — the port set, the socket records (src/sockets.rs),
// KEEPALIVE_NETS' ranges — is memory mapped at load, and only then: as .bss it would cost
// every process a mapping of its own at start. Only at a process's start, too: at a dlopen
// the program is running, and a mapping could land on memory it unmapped, where a stale
// pointer given to a hooked call would then not fail with EFAULT
// (tests/do_no_harm_dlopen_mappings.rs).

/// The runtime when socket() may configure a TCP socket at once (see `Runtime::quick`).
#[inline(always)]
pub fn quick() -> Option<&'static Runtime> {
    // SAFETY: only ever null or the address of the runtime in RUNTIME, published after it was
    // written and never changed again.
    unsafe { QUICK.load(Ordering::Acquire).as_ref() }
}

/// The runtime if the library is active; never starts the load (the hooks' fast paths).
#[inline(always)]
pub fn ready() -> Option<&'static Runtime> {
    if STATE.load(Ordering::Acquire) == ACTIVE {
        // SAFETY: ACTIVE is stored only after RUNTIME was written, and it never changes again.
        Some(unsafe { (*RUNTIME.0.get()).assume_init_ref() })
    } else {
        None
    }
}

/// Once the load is over: `Some(Some(runtime))` when the library acts in this process,
/// `Some(None)` when it does nothing here; `None` while it is not loaded yet.
pub fn settled() -> Option<Option<&'static Runtime>> {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => Some(ready()),
        INACTIVE => Some(None),
        _ => None,
    }
}

/// The runtime when the library acts in this process, loading it first if nobody has; `None`
/// when it does not, or on the loading thread itself while the load is under way (so that
/// nothing the load calls can recurse into a hook's work).
pub fn get() -> Option<&'static Runtime> {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => ready(),
        // A hook in a program's .preinit_array runs before the C library has set `environ`:
        // there is no configuration to read yet. Passed through; the constructor loads.
        UNLOADED if !process::environment_set() => None,
        UNLOADED => load_now(),
        LOADING => wait_for_load(),
        _ => None,
    }
}

/// The constructor's load: the environment is read whatever it holds (a program that emptied
/// it before a dlopen gets the defaults).
pub fn load() {
    if STATE.load(Ordering::Acquire) == UNLOADED {
        let _ = load_now();
    }
}

/// The thread that is loading, while it does.
static LOADER: AtomicI32 = AtomicI32::new(0);

/// Another thread is loading (a constructor of another library made a socket on a thread of
/// its own): the load takes microseconds, so wait for it, a bounded while — the sockets made
/// meanwhile are then configured, and a loader held up by something this thread holds (ld.so's
/// lock in a dlopen) can only make this thread give up, never deadlock.
#[cold]
#[inline(never)]
fn wait_for_load() -> Option<&'static Runtime> {
    if LOADER.load(Ordering::Acquire) == sys::tid() {
        return None;
    }
    // Spin briefly, then yield: on a loaded machine the load can take milliseconds; the bound
    // (some 100,000 yields) only matters if the loader can never finish.
    for round in 0..100_000 {
        if STATE.load(Ordering::Acquire) != LOADING {
            break;
        }
        if round < 1000 {
            core::hint::spin_loop();
        } else {
            sys::yield_now();
        }
    }
    ready()
}

#[cold]
fn load_now() -> Option<&'static Runtime> {
    if STATE
        .compare_exchange(UNLOADED, LOADING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread won the race to load: wait for it like any thread that finds it
        // loading.
        return wait_for_load();
    }
    LOADER.store(sys::tid(), Ordering::Release);
    let saved = errno::Saved::now();
    let runtime = build();
    let state = match runtime {
        Some(runtime) => {
            // SAFETY: only this thread writes, and nobody reads before ACTIVE below.
            let written = unsafe { (*RUNTIME.0.get()).write(runtime) };
            if written.quick {
                QUICK.store(written, Ordering::Release);
            }
            ACTIVE
        }
        None => INACTIVE,
    };
    STATE.store(state, Ordering::Release);
    saved.restore();
    ready()
}

fn build() -> Option<Runtime> {
    if process::secure_execution() {
        return None; // setuid/setgid/capabilities: ignore the environment entirely.
    }
    real::resolve_all();
    let environment = process::Environment::read();
    let parsed = keepalive_config::parse_by_index(|index| environment.get(index));
    let config = &parsed.config;
    if config.log >= LogLevel::Info || !parsed.errors.is_empty() {
        log::begin();
    }
    // Whether the library came with the program is asked only where it matters (a walk of
    // every loaded object).
    let mut at_start = process::AtStart::unknown();
    if !config.inherit && at_start.get() {
        process::leave_out_of_children(config.log);
    }
    if config.programs.is_some() || config.log >= LogLevel::Info {
        with_executable_path(|exe| decide(&parsed, exe, &mut at_start))
    } else {
        decide(&parsed, None, &mut at_start)
    }
}

/// `then` with the executable's path, read into a buffer on the stack (nothing to clear,
/// nothing mapped), in a frame of its own: only when a setting needs it.
#[inline(never)]
fn with_executable_path<R>(then: impl FnOnce(Option<&[u8]>) -> R) -> R {
    let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
    then(sys::executable_path(&mut buffer))
}

/// Whether and how to act in this process, and the runtime if it does.
fn decide(
    parsed: &Parsed<'static>,
    exe: Option<&[u8]>,
    at_start: &mut process::AtStart,
) -> Option<Runtime> {
    let config = &parsed.config;
    let argv0 = process::argv0();
    let program = Verbatim(exe.or(argv0).unwrap_or(b"?"));
    // Whether to act here is decided first: a bad value, even under KEEPALIVE_STRICT, is no
    // business of a program the library leaves alone (a system-wide install).
    if !config.enabled {
        log::event(config.log, LogLevel::Info, |line| {
            line.put("KEEPALIVE is off in ")
                .show(&program)
                .put(": doing nothing");
        });
        return None;
    }
    if !config.acts_in_program(exe.into_iter().chain(argv0)) {
        log::event(config.log, LogLevel::Info, |line| {
            line.show(&program)
                .put(" is not in KEEPALIVE_PROGRAMS: doing nothing");
        });
        return None;
    }
    if !parsed.errors.is_empty() && (config.log > LogLevel::Off || config.strict) {
        for error in &parsed.errors {
            log::line(|line| error.show(line));
        }
        if config.strict {
            if at_start.get() {
                sys::exit_now(2);
            }
            log::line(|line| {
                line.put(PREFIX).put(
                    ": KEEPALIVE_STRICT: loaded into a running program (not at its start): not ending it, doing nothing",
                );
            });
            return None;
        }
    }
    // `auto` with a timing left to the kernel needs its value now; otherwise the defaults are
    // learnt when first needed, without a socket of our own at load.
    let kernel = if config.needs_kernel_defaults() {
        crate::kernel::at_load()
    } else {
        KernelDefaults::default()
    };
    // The filters need memory mapped at load, which a library loaded into a running program
    // does not map (see above): nothing instead.
    if config.filters_by_address() && !at_start.get() {
        log::event(config.log, LogLevel::Error, |line| {
            line.put("KEEPALIVE_PORTS/KEEPALIVE_NETS: loaded into a running program (not at its start): doing nothing in ")
                .show(&program);
        });
        return None;
    }
    let runtime = runtime_from(config, kernel);
    if let Some(runtime) = &runtime
        && runtime.keeps_records()
        && at_start.get()
    {
        crate::sockets::prepare();
    }
    match runtime {
        Some(_) => log::event(config.log, LogLevel::Info, |line| {
            line.put("active in ")
                .show(&program)
                .put(": ")
                .show(&config.summary(kernel));
        }),
        // Without its filter the policy would reach sockets it must not: nothing instead.
        None => log::event(config.log, LogLevel::Error, |line| {
            line.put("no memory for the filters in ")
                .show(&program)
                .put(": doing nothing");
        }),
    }
    runtime
}

/// The runtime, or `None` when a filter's memory could not be mapped.
fn runtime_from(config: &Config<'_>, kernel: KernelDefaults) -> Option<Runtime> {
    let ports = config.ports.and_then(|list| {
        let memory = sys::map_memory(core::mem::size_of::<PortSet>())?.cast::<PortSet>();
        // SAFETY: the fresh mapping is zeroed (an empty PortSet, a plain array of words),
        // page aligned, owned by nobody else and never unmapped.
        let set = unsafe { &mut *memory };
        list.fill(set);
        Some(&*set)
    });
    let nets = config.nets.and_then(|list| {
        let bytes = list.len().checked_mul(core::mem::size_of::<NetRange>())?;
        let memory = sys::map_memory(bytes)?.cast::<NetRange>();
        // SAFETY: the fresh mapping is zeroed (a valid NetRange array of list.len()), page
        // aligned, owned by nobody else and never unmapped.
        let storage = unsafe { core::slice::from_raw_parts_mut(memory, list.len()) };
        Some(list.build(storage))
    });
    let plan = config.plan(kernel);
    // TCP_USER_TIMEOUT is 0 unless set, and ours never is: the one witness that cannot be
    // mistaken for the kernel's default. Otherwise the first TCP-level option planned.
    let witness = if plan.value(SocketOption::UserTimeout).is_some() {
        SocketOption::UserTimeout
    } else {
        plan.steps()
            .iter()
            .map(|&(option, _)| option)
            .find(|option| option.level() == keepalive_config::IPPROTO_TCP)
            .unwrap_or(SocketOption::KeepAlive)
    };
    let mut steps = [RawStep {
        level: 0,
        name: 0,
        value: 0,
    }; SocketOption::COUNT];
    for (step, &(option, value)) in steps.iter_mut().zip(plan.steps()) {
        *step = RawStep {
            level: option.level(),
            name: option.name(),
            value,
        };
    }
    if ports.is_some() != config.ports.is_some() || nets.is_some() != config.nets.is_some() {
        return None;
    }
    Some(Runtime {
        quick: ports.is_none() && nets.is_none() && !log::enabled(config.log, LogLevel::Debug),
        log: config.log,
        policy: config.override_policy,
        plan,
        ports,
        nets,
        witness,
        steps,
        step_count: plan.steps().len(),
    })
}
