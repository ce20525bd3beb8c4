//! Running the command layer's futures on a plain thread: every future of this store is
//! ready at its first poll (its SQL runs synchronously), so no runtime is needed.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Wakes the thread that waits: a formality, since the futures never wait (a future that
/// did would park the thread until woken).
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
