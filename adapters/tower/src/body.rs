//! The bodies that run the body and trailer callbacks as the bytes flow:
//! [`WasmRequestBody`] (read by the inner service) and [`WasmResponseBody`] (written to the
//! client). Both await the host where a plugin pauses — also in the response body, after
//! the response headers went out, which Pingora 0.9 cannot do.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use wasmbridge_host::{BodyOutcome, HeaderList, LocalResponse, TrailersOutcome};

use crate::state::{Shared, Wait};

/// The error type of the bodies: the inner body's error, or why a plugin ended the stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a body ended early because of a plugin.
#[derive(Debug, thiserror::Error)]
pub enum StreamEnded {
    /// A plugin reset the stream (or replied locally after the response had started).
    #[error("the stream was reset by a plugin")]
    Reset,
    /// A plugin replied locally from a request body or trailer callback: the inner
    /// service's request is cut off and the client gets the local reply instead.
    #[error("a plugin replied locally; the request is not forwarded further")]
    LocalReply,
}

/// What the request body tells the service future when a plugin ended the request.
pub(crate) enum Early {
    Reply(LocalResponse),
    Reset,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Body,
    Trailers,
}

/// A request body seen by the plugins: chunks go through `proxy_on_request_body` (held
/// while a plugin buffers, with the host's body limits), trailers through
/// `proxy_on_request_trailers`; the inner service reads what the plugins let through.
pub struct WasmRequestBody<B> {
    inner: B,
    filter: Option<Filter>,
}

struct Filter {
    shared: Shared,
    /// Whether a plugin of the chain has body callbacks (else chunks pass untouched).
    body_plugins: bool,
    early: Option<oneshot::Sender<Early>>,
    pending: VecDeque<Frame<Bytes>>,
    wait: Option<(Wait, Stage)>,
    /// The body end was given to the plugins.
    done: bool,
}

impl<B> WasmRequestBody<B> {
    /// A body the plugins do not see.
    pub(crate) fn plain(inner: B) -> Self {
        WasmRequestBody {
            inner,
            filter: None,
        }
    }

    pub(crate) fn filtered(
        inner: B,
        shared: Shared,
        body_plugins: bool,
        early: oneshot::Sender<Early>,
    ) -> Self {
        WasmRequestBody {
            inner,
            filter: Some(Filter {
                shared,
                body_plugins,
                early: Some(early),
                pending: VecDeque::new(),
                wait: None,
                done: false,
            }),
        }
    }
}

impl Filter {
    /// Ends the request with a plugin's decision; the inner service sees an error.
    fn end(&mut self, early: Early) -> BoxError {
        self.done = true;
        let err = match &early {
            Early::Reply(_) => StreamEnded::LocalReply,
            Early::Reset => StreamEnded::Reset,
        };
        if let Some(tx) = self.early.take() {
            let _ = tx.send(early);
        }
        Box::new(err)
    }

    fn body_outcome(&mut self, outcome: BodyOutcome, eos: bool) -> Result<(), BoxError> {
        match outcome {
            BodyOutcome::Forward(bytes) => {
                if !bytes.is_empty() {
                    self.pending.push_back(Frame::data(bytes));
                }
                if eos {
                    self.done = true;
                }
            }
            BodyOutcome::Held if eos => self.wait = Some((self.shared.wait(), Stage::Body)),
            BodyOutcome::Held => {}
            BodyOutcome::LocalReply(reply) => {
                let resp = self.shared.lock().stream.local_response(reply);
                return Err(self.end(Early::Reply(resp)));
            }
            BodyOutcome::ResponseTooLarge(resp) => return Err(self.end(Early::Reply(resp))),
            BodyOutcome::Reset => return Err(self.end(Early::Reset)),
        }
        Ok(())
    }

    fn trailers_outcome(
        &mut self,
        outcome: TrailersOutcome,
        mut trailers: HeaderMap,
    ) -> Result<(), BoxError> {
        match outcome {
            TrailersOutcome::Continue(held) => {
                if !held.is_empty() {
                    self.pending.push_back(Frame::data(held));
                }
                let mut state = self.shared.lock();
                let list = &state.stream.data().request_trailers;
                if list.is_modified() {
                    list.write_header_map(&mut trailers);
                    state.stream.data_mut().request_trailers.mark_clean();
                }
                drop(state);
                self.pending.push_back(Frame::trailers(trailers));
                self.done = true;
            }
            TrailersOutcome::Paused => {
                self.wait = Some((self.shared.wait(), Stage::Trailers));
            }
            TrailersOutcome::LocalReply(reply) => {
                let resp = self.shared.lock().stream.local_response(reply);
                return Err(self.end(Early::Reply(resp)));
            }
            TrailersOutcome::Reset => return Err(self.end(Early::Reset)),
        }
        Ok(())
    }
}

impl<B> Body for WasmRequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(f) = this.filter.as_mut() else {
            return Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into);
        };
        loop {
            if let Some(frame) = f.pending.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if f.done {
                return Poll::Ready(None);
            }
            if let Some((wait, stage)) = f.wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                let stage = *stage;
                f.wait = None;
                let outcome = {
                    let mut state = f.shared.lock();
                    match stage {
                        Stage::Body => Ok(state.stream.resume_body()),
                        Stage::Trailers => {
                            let outcome = state.stream.resume_trailers();
                            let mut trailers = HeaderMap::new();
                            state
                                .stream
                                .data()
                                .request_trailers
                                .write_header_map(&mut trailers);
                            Err((outcome, trailers))
                        }
                    }
                };
                let result = match outcome {
                    Ok(o) => f.body_outcome(o, true),
                    Err((o, trailers)) => f.trailers_outcome(o, trailers),
                };
                if let Err(e) = result {
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            if f.shared.is_finished() {
                // The client went away and the stream ended: pass the rest through.
                return Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into);
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => {
                    if !f.body_plugins {
                        f.done = true;
                        continue;
                    }
                    let outcome = f.shared.lock().stream.on_request_body(Bytes::new(), true);
                    if let Err(e) = f.body_outcome(outcome, true) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => frame,
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let eos = this.inner.is_end_stream();
                    let mut state = f.shared.lock();
                    state.stream.data_mut().info.request_body_bytes += data.len() as u64;
                    if !f.body_plugins {
                        drop(state);
                        if eos {
                            f.done = true;
                        }
                        f.pending.push_back(Frame::data(data));
                        continue;
                    }
                    let outcome = state.stream.on_request_body(data, eos);
                    drop(state);
                    if let Err(e) = f.body_outcome(outcome, eos) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    continue;
                }
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers() {
                let outcome = {
                    let mut state = f.shared.lock();
                    state.stream.data_mut().request_trailers =
                        HeaderList::from_header_map(&trailers);
                    state.stream.on_request_trailers()
                };
                if let Err(e) = f.trailers_outcome(outcome, trailers) {
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.filter {
            None => self.inner.is_end_stream(),
            Some(f) => f.done && f.pending.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.filter {
            Some(f) if f.body_plugins => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

/// A response body seen by the plugins: chunks through `proxy_on_response_body` (in
/// reverse chain order), trailers through `proxy_on_response_trailers`. Where a plugin
/// pauses, the body awaits the host (a callout's answer, a tick) before going on. When it
/// ends, or when the client goes away and it is dropped, the stream ends: `proxy_on_log`,
/// `proxy_on_done`, `proxy_on_delete`.
pub struct WasmResponseBody<B> {
    inner: Option<B>,
    shared: Option<Shared>,
    body_plugins: bool,
    pending: VecDeque<Frame<Bytes>>,
    wait: Option<(Wait, Stage)>,
    /// While a plugin holds the body before its end: a continue may come before the next
    /// chunk does (a callout's answer), and then what it held goes on at once.
    held: Option<Wait>,
    done: bool,
    reset: bool,
    status: u16,
}

impl<B> WasmResponseBody<B> {
    /// The inner response's body, the plugins not involved.
    pub(crate) fn plain(inner: B) -> Self {
        WasmResponseBody {
            inner: Some(inner),
            shared: None,
            body_plugins: false,
            pending: VecDeque::new(),
            wait: None,
            held: None,
            done: false,
            reset: false,
            status: 0,
        }
    }

    /// A complete body (a local reply's), ending `shared` (if any) once sent.
    pub(crate) fn full(body: Bytes, shared: Option<Shared>, status: u16) -> Self {
        let mut pending = VecDeque::new();
        if !body.is_empty() {
            pending.push_back(Frame::data(body));
        }
        WasmResponseBody {
            inner: None,
            shared,
            body_plugins: false,
            pending,
            wait: None,
            held: None,
            done: true,
            reset: false,
            status,
        }
    }

    /// A body that fails at once: the client's stream is reset (HTTP/2) or its connection
    /// closed (HTTP/1.1).
    pub(crate) fn reset(shared: Option<Shared>) -> Self {
        let mut body = WasmResponseBody::full(Bytes::new(), shared, 0);
        body.reset = true;
        body
    }

    pub(crate) fn filtered(inner: B, shared: Shared, body_plugins: bool, status: u16) -> Self {
        WasmResponseBody {
            inner: Some(inner),
            shared: Some(shared),
            body_plugins,
            pending: VecDeque::new(),
            wait: None,
            held: None,
            done: false,
            reset: false,
            status,
        }
    }

    fn finish(&mut self) {
        if let Some(shared) = self.shared.take() {
            let status = (self.status != 0 && !self.reset).then_some(self.status);
            shared.finish(status);
        }
    }

    fn body_outcome(&mut self, outcome: BodyOutcome, eos: bool) {
        match outcome {
            BodyOutcome::Forward(bytes) => {
                if !bytes.is_empty() {
                    self.pending.push_back(Frame::data(bytes));
                }
                if eos {
                    self.done = true;
                }
            }
            BodyOutcome::Held if eos => {
                if let Some(shared) = &self.shared {
                    self.wait = Some((shared.wait(), Stage::Body));
                }
            }
            BodyOutcome::Held => self.held = self.shared.as_ref().map(Shared::wait),
            BodyOutcome::LocalReply(_) => {
                tracing::warn!(
                    "a plugin sent a local reply from a response body callback after the response headers were sent; the stream is reset"
                );
                self.reset = true;
            }
            BodyOutcome::ResponseTooLarge(_) => {
                tracing::warn!(
                    "a plugin buffered more of the response body than its limits.body after the response headers were sent; the stream is reset"
                );
                self.reset = true;
            }
            BodyOutcome::Reset => self.reset = true,
        }
    }

    fn trailers_outcome(&mut self, outcome: TrailersOutcome, mut trailers: HeaderMap) {
        match outcome {
            TrailersOutcome::Continue(held) => {
                if !held.is_empty() {
                    self.pending.push_back(Frame::data(held));
                }
                if let Some(shared) = &self.shared {
                    let mut state = shared.lock();
                    let list = &state.stream.data().response_trailers;
                    if list.is_modified() {
                        list.write_header_map(&mut trailers);
                        state.stream.data_mut().response_trailers.mark_clean();
                    }
                }
                self.pending.push_back(Frame::trailers(trailers));
                self.done = true;
            }
            TrailersOutcome::Paused => {
                if let Some(shared) = &self.shared {
                    self.wait = Some((shared.wait(), Stage::Trailers));
                }
            }
            TrailersOutcome::LocalReply(_) | TrailersOutcome::Reset => self.reset = true,
        }
    }
}

impl<B> Drop for WasmResponseBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B> Body for WasmResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.reset {
                this.pending.clear();
                this.finish();
                return Poll::Ready(Some(Err(Box::new(StreamEnded::Reset))));
            }
            if let Some(frame) = this.pending.pop_front() {
                if let (Some(shared), Some(data)) = (&this.shared, frame.data_ref()) {
                    shared.lock().stream.data_mut().info.response_body_bytes += data.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            if this.done {
                this.finish();
                return Poll::Ready(None);
            }
            if let Some((wait, stage)) = this.wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                let stage = *stage;
                this.wait = None;
                let Some(shared) = this.shared.clone() else {
                    this.done = true;
                    continue;
                };
                let mut state = shared.lock();
                match stage {
                    Stage::Body => {
                        let outcome = state.stream.resume_body();
                        drop(state);
                        this.body_outcome(outcome, true);
                    }
                    Stage::Trailers => {
                        let outcome = state.stream.resume_trailers();
                        let mut trailers = HeaderMap::new();
                        state
                            .stream
                            .data()
                            .response_trailers
                            .write_header_map(&mut trailers);
                        drop(state);
                        this.trailers_outcome(outcome, trailers);
                    }
                }
                continue;
            }
            if let (Some(held), Some(shared)) = (this.held.as_mut(), this.shared.clone())
                && held.as_mut().poll(cx).is_ready()
            {
                this.held = None;
                let outcome = shared.lock().stream.resume_body();
                this.body_outcome(outcome, false);
                continue;
            }
            let Some(inner) = this.inner.as_mut() else {
                this.done = true;
                continue;
            };
            let polled = ready!(Pin::new(&mut *inner).poll_frame(cx));
            // The next callback gets everything the plugins hold.
            this.held = None;
            let frame = match polled {
                None => {
                    match (&this.shared, this.body_plugins) {
                        (Some(shared), true) => {
                            let outcome = shared.lock().stream.on_response_body(Bytes::new(), true);
                            this.body_outcome(outcome, true);
                        }
                        _ => this.done = true,
                    }
                    continue;
                }
                Some(Err(e)) => {
                    this.finish();
                    return Poll::Ready(Some(Err(e.into())));
                }
                Some(Ok(frame)) => frame,
            };
            let Some(shared) = this.shared.clone() else {
                return Poll::Ready(Some(Ok(frame)));
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let eos = inner.is_end_stream();
                    if this.body_plugins {
                        let outcome = shared.lock().stream.on_response_body(data, eos);
                        this.body_outcome(outcome, eos);
                    } else {
                        this.pending.push_back(Frame::data(data));
                        if eos {
                            this.done = true;
                        }
                    }
                    continue;
                }
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers() {
                let outcome = {
                    let mut state = shared.lock();
                    state.stream.data_mut().response_trailers =
                        HeaderList::from_header_map(&trailers);
                    state.stream.on_response_trailers()
                };
                this.trailers_outcome(outcome, trailers);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.reset
            && self.done
            && self.pending.is_empty()
            && (self.inner.is_none() || self.shared.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        if self.reset {
            return SizeHint::default();
        }
        if self.inner.is_none() {
            let n: usize = self
                .pending
                .iter()
                .filter_map(|f| f.data_ref().map(Bytes::len))
                .sum();
            return SizeHint::with_exact(n as u64);
        }
        match (&self.inner, self.body_plugins) {
            (Some(inner), false) => inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
