//! The state one request shares between the service future, the request body the inner
//! service reads and the response body the server writes: the [`HttpStream`] behind a
//! mutex that is never held across an `.await`, and the end of the stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use wasmbridge_host::HttpStream;

/// A boxed, sendable future, for waits stored in bodies.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Streams in flight: started and not yet finished.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenStreams(Arc<AtomicUsize>);

impl OpenStreams {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

pub(crate) struct StreamState {
    pub stream: HttpStream,
    finished: bool,
    open: OpenStreams,
}

/// A request's stream, shared; finishing it (every `on_log`, `on_done`, `on_delete`) is
/// idempotent and also happens when the last holder drops it.
#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<StreamState>>);

impl Shared {
    pub fn new(stream: HttpStream, open: &OpenStreams) -> Shared {
        open.0.fetch_add(1, Ordering::AcqRel);
        Shared(Arc::new(Mutex::new(StreamState {
            stream,
            finished: false,
            open: open.clone(),
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A future that completes when a paused stream may be resumed.
    pub fn wait(&self) -> Wait {
        let waiter = self.lock().stream.waiter();
        Box::pin(async move { waiter.wait().await })
    }

    /// Ends the stream, with `status` as the response code the client got (if any).
    pub fn finish(&self, status: Option<u16>) {
        self.lock().finish(status);
    }

    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }
}

impl StreamState {
    pub fn finish(&mut self, status: Option<u16>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let info = &mut self.stream.data_mut().info;
        if let Some(status) = status {
            info.response_code = Some(status);
        }
        if let Some(sent) = info.upstream.request_sent {
            info.upstream.backend_latency = Some(sent.elapsed());
        }
        self.stream.finish();
        self.open.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        self.finish(None);
    }
}
