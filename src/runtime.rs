//! The one init path: run by the load-time constructor, or by the first hook when another
//! library's constructor makes a socket before ours has run. The environment is read exactly
//! once. A state word is the recursion guard and the publication: hooks pass straight through
//! while init is under way (on any thread) and read the runtime without a lock once it is.

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_char, c_int, c_void};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use keepalive_config::{
    Config, KernelDefaults, LogLevel, NetRange, NetSet, Override, PREFIX, Plan, PortSet,
    SocketOption, preload_list,
};

use crate::{errno, log, real, sys};

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
static PORTS: WriteOnce<PortSet> = WriteOnce(UnsafeCell::new(PortSet::EMPTY));

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

/// The runtime when the library acts in this process, loading it first if nobody has; `None`
/// when it does not, or while the load is under way (so that nothing the load calls can
/// recurse into a hook's work, and another thread never waits).
pub fn get() -> Option<&'static Runtime> {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => ready(),
        UNLOADED => load_now(),
        _ => None,
    }
}

#[cold]
fn load_now() -> Option<&'static Runtime> {
    if STATE
        .compare_exchange(UNLOADED, LOADING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return ready();
    }
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

/// The value of an environment variable, read with getenv at load.
fn variable(name: &str) -> Option<&'static [u8]> {
    let mut buffer = [0u8; 32];
    buffer
        .get_mut(..name.len())?
        .copy_from_slice(name.as_bytes());
    let name = CStr::from_bytes_until_nul(&buffer).ok()?;
    // SAFETY: a NUL-terminated name; getenv returns null or a NUL-terminated value.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated, and the environment is not changed while we load
    // (the values are not kept past the load).
    Some(unsafe { CStr::from_ptr(value) }.to_bytes())
}

fn build() -> Option<Runtime> {
    if secure_execution() {
        return None; // setuid/setgid/capabilities: ignore the environment entirely.
    }
    real::resolve_all();
    let parsed = keepalive_config::parse(variable);
    let config = parsed.config;
    let at_start = loaded_at_start();
    if config.log >= LogLevel::Info || !parsed.errors.is_empty() {
        log::begin();
    }
    if !parsed.errors.is_empty() && (config.log > LogLevel::Off || config.strict) {
        for error in &parsed.errors {
            log::line(format_args!("{error}"));
        }
        if config.strict {
            if at_start {
                sys::exit_now(2);
            }
            log::line(format_args!(
                "{PREFIX}: KEEPALIVE_STRICT: loaded into a running program (not at its start): not ending it, doing nothing"
            ));
            return None;
        }
    }
    if !config.inherit && at_start {
        leave_out_of_children(config.log);
    }
    let mut exe_buffer = [0u8; 4096];
    let exe = if config.programs.is_some() || config.log >= LogLevel::Info {
        sys::executable_path(&mut exe_buffer)
    } else {
        None
    };
    let argv0 = argv0();
    let program = exe.or(argv0).unwrap_or("?");
    if !config.enabled {
        log::event(
            config.log,
            LogLevel::Info,
            format_args!("KEEPALIVE is off in {program}: doing nothing"),
        );
        return None;
    }
    if !config.acts_in_program(exe.into_iter().chain(argv0)) {
        log::event(
            config.log,
            LogLevel::Info,
            format_args!("{program} is not in KEEPALIVE_PROGRAMS: doing nothing"),
        );
        return None;
    }
    // `auto` with a timing left to the kernel needs its value now; otherwise the defaults are
    // learnt when first needed, without a socket of our own at load.
    let kernel = if config.needs_kernel_defaults() {
        crate::kernel::defaults()
    } else {
        KernelDefaults::default()
    };
    log::event(
        config.log,
        LogLevel::Info,
        format_args!("active in {program}: {}", config.summary(kernel)),
    );
    Some(runtime_from(&config, kernel))
}

fn runtime_from(config: &Config<'_>, kernel: KernelDefaults) -> Runtime {
    let ports = config.ports.map(|list| {
        // SAFETY: only the loading thread writes, before the runtime is published.
        let set = unsafe { &mut *PORTS.0.get() };
        list.fill(set);
        &*set
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
    Runtime {
        quick: ports.is_none() && nets.is_none() && !log::enabled(config.log, LogLevel::Debug),
        log: config.log,
        policy: config.override_policy,
        plan,
        ports,
        nets,
        witness,
        steps,
        step_count: plan.steps().len(),
    }
}

/// True in secure-execution mode (setuid, setgid, file capabilities).
fn secure_execution() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

unsafe extern "C" {
    /// argv[0], kept by glibc and musl alike.
    static program_invocation_name: *const c_char;
}

fn argv0() -> Option<&'static str> {
    // SAFETY: set by the C library before any constructor runs; points to argv[0], which
    // lives as long as the process, or is null.
    let name = unsafe { program_invocation_name };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated argv string.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

/// Whether the library was loaded with the program (LD_PRELOAD, /etc/ld.so.preload) rather
/// than dlopen()ed into a running one: ld.so lists the objects loaded at start in order, the
/// executable, its preloads, then their dependencies, the C library among them; dlopen
/// appends. So a preload comes before the C library that defines `socket`.
fn loaded_at_start() -> bool {
    struct Search {
        ours: usize,
        libc: usize,
        index: usize,
        ours_at: Option<usize>,
        libc_at: Option<usize>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our own data pointer.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: ld.so's program headers for this object, dlpi_phnum of them.
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let holds = |address: usize| {
            headers.iter().any(|header| {
                let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
                header.p_type == libc::PT_LOAD
                    && start <= address
                    && address - start < header.p_memsz as usize
            })
        };
        if search.ours_at.is_none() && holds(search.ours) {
            search.ours_at = Some(search.index);
        }
        if search.libc_at.is_none() && holds(search.libc) {
            search.libc_at = Some(search.index);
        }
        search.index += 1;
        0
    }
    let mut search = Search {
        ours: loaded_at_start as *const () as usize,
        libc: real::socket() as usize,
        index: 0,
        ours_at: None,
        libc_at: None,
    };
    // SAFETY: the callback only reads what ld.so passes and writes `search`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    match (search.ours_at, search.libc_at) {
        (Some(ours), Some(libc)) => ours < libc,
        // Cannot tell: behave as a preload (the common case).
        _ => true,
    }
}

/// KEEPALIVE_INHERIT=no: takes this library out of LD_PRELOAD so that programs this process
/// execs start without it (it stays loaded here). Only at start, before the program's own
/// threads exist.
fn leave_out_of_children(log_level: LogLevel) {
    let (Some(library), Some(list)) = (own_library_path(), variable("LD_PRELOAD")) else {
        return;
    };
    let Ok(list) = core::str::from_utf8(list) else {
        return;
    };
    let mut rest = [0u8; 4096];
    let Some(remaining) = preload_list::without(list, library, &mut rest[..4095]) else {
        return;
    };
    let remaining_length = remaining.len();
    // rest[remaining_length] is 0: the buffer is zeroed and the list used at most 4095 bytes.
    let Ok(value) = CStr::from_bytes_until_nul(&rest) else {
        return;
    };
    // SAFETY: NUL-terminated name and value; at start no other thread reads the environment.
    unsafe {
        if remaining_length == 0 {
            libc::unsetenv(c"LD_PRELOAD".as_ptr());
        } else {
            libc::setenv(c"LD_PRELOAD".as_ptr(), value.as_ptr(), 1);
        }
    }
    log::event(
        log_level,
        LogLevel::Info,
        format_args!(
            "KEEPALIVE_INHERIT=no: LD_PRELOAD for children is now \"{}\"",
            value.to_str().unwrap_or("")
        ),
    );
}

/// The path this library was loaded from, as ld.so recorded it.
fn own_library_path() -> Option<&'static str> {
    let mut info = MaybeUninit::<libc::Dl_info>::zeroed();
    let anchor = own_library_path as *const c_void;
    // SAFETY: dladdr only fills `info` for an address inside a loaded object.
    if unsafe { libc::dladdr(anchor, info.as_mut_ptr()) } == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so info is initialised; dli_fname lives as long as the
    // object stays loaded, which for a preload is the whole process.
    let name = unsafe { info.assume_init() }.dli_fname;
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated string owned by ld.so.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}
