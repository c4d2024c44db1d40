//! The one bridge from berth's blocking threads to async code (the Engine API, HTTP clients):
//! [`block_on`] runs a future on the controller's runtime when called from one of its blocking
//! threads, else on one runtime the process starts on first use.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

/// The CLI's runtime: one worker drives every connection, whichever thread waits on it.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("berth-io")
            .enable_all()
            .build()
            // Only fails when the OS refuses a thread or an epoll instance: nothing berth can do.
            .unwrap_or_else(|e| panic!("cannot start berth's I/O runtime: {e}"))
    })
}

/// Run `f` to completion from a blocking thread (an executor, a CLI command). Never call it from
/// an async task: that would block a runtime worker.
pub fn block_on<F: Future>(f: F) -> F::Output {
    match Handle::try_current() {
        Ok(h) => h.block_on(f),
        Err(_) => runtime().block_on(f),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn futures_run_from_many_threads_at_once() {
        let threads: Vec<_> = (0..4u64)
            .map(|i| {
                std::thread::spawn(move || {
                    super::block_on(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        i
                    })
                })
            })
            .collect();
        let sum: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(sum, 6);
    }
}
