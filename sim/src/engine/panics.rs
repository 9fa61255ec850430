//! Panics inside a simulated run: a hook records every panic raised while a run executes on
//! this thread (also those something downstream catches), so each becomes a violation of
//! that run, and a panic that aborts the process names the run first.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static IN_SIM: RefCell<bool> = const { RefCell::new(false) };
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// What runs on this thread (scenario and seed), for the one report a panic that aborts
    /// the process gets.
    static RUN: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs (once) a panic hook that records panics raised while a sim runs on this thread,
/// including panics that something downstream catches, and defers to the previous hook
/// everywhere else.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_sim = IN_SIM.with(|f| *f.borrow());
            // A panic while unwinding from another (in a destructor) or out of a function
            // that cannot unwind: the process aborts right after this hook, so nothing
            // downstream can report the run. Say here which run it was and what panicked
            // first. (`PanicHookInfo::can_unwind` is unstable: the message tells.)
            let text = info.to_string();
            let aborts = text.contains("panic in a destructor during cleanup")
                || text.contains("panic in a function that cannot unwind");
            if in_sim && aborts {
                let run = RUN.with(|r| r.borrow().clone());
                eprintln!("laxsim: {run}: a panic while unwinding aborts the process");
                PANICS.with(|p| {
                    for (i, earlier) in p.borrow().iter().enumerate() {
                        eprintln!("  panic {}: {earlier}", i + 1);
                    }
                });
                eprintln!("  then: {text}");
                prev(info);
            } else if in_sim {
                PANICS.with(|p| p.borrow_mut().push(info.to_string()));
                if std::env::var_os("LAXSIM_PANIC_TRACE").is_some() {
                    prev(info);
                }
            } else {
                prev(info);
            }
        }));
    });
}

/// Runs `f` (one simulated run, named by `run`: scenario and seed) on this thread,
/// collecting the panics raised inside it, including those something downstream caught. A
/// panic that aborts the process (one raised while unwinding) is printed with `run` first.
pub fn catch_sim_panics<R>(
    run: &str,
    f: impl FnOnce() -> R,
) -> (std::thread::Result<R>, Vec<String>) {
    install_hook();
    RUN.with(|r| *r.borrow_mut() = run.to_string());
    IN_SIM.with(|f| *f.borrow_mut() = true);
    PANICS.with(|p| p.borrow_mut().clear());
    let res = catch_unwind(AssertUnwindSafe(f));
    IN_SIM.with(|f| *f.borrow_mut() = false);
    let panics = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    (res, panics)
}
