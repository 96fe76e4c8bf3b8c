//! The one init path: run by the load-time constructor, and lazily by the first hook when
//! another library's constructor makes a socket before ours has run. The environment is read
//! exactly once; a recursion guard lets hooks pass straight through while init is under way.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use keepalive_config::{Config, KernelDefaults, LogLevel, NetSet, Override, PortSet, preload_list};

use crate::log;
use crate::policy::SocketOption;
use crate::real;
use crate::sys;

/// Everything a hook needs, fixed at load.
pub struct Runtime {
    pub log: LogLevel,
    pub policy: Override,
    /// The configured options in the order they are applied, so that configuring a socket
    /// walks only what is set.
    plan: [Step; SocketOption::COUNT],
    planned: usize,
    pub ports: Option<PortSet>,
    pub nets: Option<NetSet>,
    /// socket() may take the fast path: no address filter, no debug log.
    pub fast: bool,
}

impl Runtime {
    /// The value configured for `option`; `None` leaves the kernel's.
    pub fn setting(&self, option: SocketOption) -> Option<c_int> {
        self.plan()
            .iter()
            .find(|step| step.option == option)
            .map(|step| step.value)
    }

    pub fn plan(&self) -> &[Step] {
        &self.plan[..self.planned]
    }

    pub fn filters_by_address(&self) -> bool {
        self.ports.is_some() || self.nets.is_some()
    }
}

/// One option to set on every configured socket, with its level and name looked up once.
#[derive(Clone, Copy)]
pub struct Step {
    pub option: SocketOption,
    pub level: c_int,
    pub name: c_int,
    pub value: c_int,
}

impl Step {
    fn new(option: SocketOption, value: c_int) -> Self {
        let (level, name) = option.level_and_name();
        Self {
            option,
            level,
            name,
            value,
        }
    }
}

/// `None` once loaded means the library stays inactive for the life of the process.
static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

thread_local! {
    static LOADING: Cell<bool> = const { Cell::new(false) };
}

/// The runtime, published once loaded when socket()/accept() may take their fast paths (no
/// address filter, no debug log); null otherwise. One load and one test in a hook.
static FAST: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());

/// The runtime when the hooks' fast paths apply; never starts the load.
#[inline(always)]
pub fn loaded() -> Option<&'static Runtime> {
    // SAFETY: only ever null or the address of the runtime inside RUNTIME, which lives (and
    // is never changed) for the rest of the process.
    unsafe { FAST.load(Ordering::Acquire).as_ref() }
}

/// The runtime when the library acts in this process; `None` when it does not (or while this
/// thread is inside init, so that nothing we call there can recurse into a hook's work).
pub fn active() -> Option<&'static Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return runtime.as_ref();
    }
    if LOADING.get() {
        return None;
    }
    LOADING.set(true);
    let runtime = RUNTIME.get_or_init(load);
    if let Some(runtime) = runtime.as_ref().filter(|runtime| runtime.fast) {
        FAST.store(std::ptr::from_ref(runtime).cast_mut(), Ordering::Release);
    }
    LOADING.set(false);
    runtime.as_ref()
}

fn load() -> Option<Runtime> {
    if sys::secure_execution() {
        return None; // setuid/setgid/capabilities: ignore the environment entirely.
    }
    real::resolve_all();
    let parsed = keepalive_config::parse(|name| std::env::var_os(name));
    let config = parsed.config;
    if config.log > LogLevel::Off || config.strict {
        for error in &parsed.errors {
            log::raw(&error.to_string());
        }
    }
    if config.strict && !parsed.errors.is_empty() {
        sys::exit_now(2);
    }
    if !config.inherit {
        leave_out_of_children(config.log);
    }
    // The executable's name matters only to the program filter and the log: no readlink
    // otherwise.
    let mut exe_buffer = [0; 4096];
    let exe = if config.programs.is_some() || config.log >= LogLevel::Info {
        sys::executable_path(&mut exe_buffer)
    } else {
        None
    };
    let argv0 = sys::argv0();
    let program = exe.or(argv0).unwrap_or("?");
    if !config.enabled {
        log::log_line!(
            config.log,
            LogLevel::Info,
            "KEEPALIVE is off in {program}: doing nothing"
        );
        return None;
    }
    if !config.acts_in_program(exe.into_iter().chain(argv0)) {
        log::log_line!(
            config.log,
            LogLevel::Info,
            "{program} is not in KEEPALIVE_PROGRAMS: doing nothing"
        );
        return None;
    }
    let kernel = if config.needs_kernel_defaults() {
        sys::kernel_defaults().unwrap_or_default()
    } else {
        KernelDefaults::default()
    };
    log::log_line!(
        config.log,
        LogLevel::Info,
        "active in {program}: {}",
        config.summary(kernel),
    );
    Some(runtime_from(config, kernel))
}

fn runtime_from(config: Config, kernel: KernelDefaults) -> Runtime {
    let as_int = |value: Option<u32>| value.and_then(|value| c_int::try_from(value).ok());
    let values = [
        (SocketOption::KeepAlive, Some(1)),
        (SocketOption::Idle, as_int(config.idle)),
        (SocketOption::Interval, as_int(config.interval)),
        (SocketOption::Count, as_int(config.count)),
        (
            SocketOption::UserTimeout,
            as_int(config.user_timeout_ms(kernel)),
        ),
    ];
    let mut plan = [Step::new(SocketOption::KeepAlive, 0); SocketOption::COUNT];
    let mut planned = 0;
    for (option, value) in values {
        if let Some(value) = value {
            plan[planned] = Step::new(option, value);
            planned += 1;
        }
    }
    let fast = !config.filters_by_address() && !crate::log::enabled(config.log, LogLevel::Debug);
    Runtime {
        fast,
        log: config.log,
        policy: config.override_policy,
        plan,
        planned,
        ports: config.ports,
        nets: config.nets,
    }
}

/// KEEPALIVE_INHERIT=no: takes this library out of LD_PRELOAD so that programs this process
/// execs start without it (it stays loaded here). Runs during load, before `main` starts
/// threads of its own.
fn leave_out_of_children(log_level: LogLevel) {
    let (Some(library), Some(list)) = (sys::own_library_path(), std::env::var_os("LD_PRELOAD"))
    else {
        return;
    };
    let Some(list) = list.to_str() else {
        return;
    };
    let remaining = preload_list::without(list, library);
    // SAFETY: the environment is changed once, while the process is still loading, before
    // the program's own threads exist.
    unsafe {
        match &remaining {
            Some(rest) => std::env::set_var("LD_PRELOAD", rest),
            None => std::env::remove_var("LD_PRELOAD"),
        }
    }
    log::log_line!(
        log_level,
        LogLevel::Info,
        "KEEPALIVE_INHERIT=no: LD_PRELOAD for children is now {:?}",
        remaining.as_deref().unwrap_or(""),
    );
}
