//! [`Capture`]: a `tracing` layer that keeps every span (name, fields, parent) and every
//! event (target, level, fields, the span it happened in), for tests of what the engine
//! logs.
//!
//! Spans are numbered in the order they were created ([`SpanRecord::seq`]), since the
//! registry reuses its ids once a span closes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span, as created and recorded.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// Its number, in creation order.
    pub seq: usize,
    /// Its name (`tradeflow.run`).
    pub name: String,
    /// Its target.
    pub target: String,
    /// The number of its parent, if it has one.
    pub parent: Option<usize>,
    /// Its fields, as text (`Debug` for what is not a string or a number).
    pub fields: BTreeMap<String, String>,
}

impl SpanRecord {
    /// Field `name`'s text, if the span has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// One event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Its target.
    pub target: String,
    /// Its level.
    pub level: tracing::Level,
    /// The number of the span it happened in, if any.
    pub span: Option<usize>,
    /// Its fields, `message` included.
    pub fields: BTreeMap<String, String>,
}

impl EventRecord {
    /// The event's message.
    pub fn message(&self) -> &str {
        self.field("message").unwrap_or_default()
    }

    /// Field `name`'s text, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct Captured {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

/// What a test's subscriber captured; clone it into the layer, read it afterwards.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Captured>>);

/// A span's number, kept in its extensions.
struct Seq(usize);

impl Capture {
    /// A subscriber (the registry with this capture as its only layer).
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync + 'static {
        Registry::default().with(self.clone())
    }

    /// Runs `body` with this capture as the thread's subscriber.
    pub fn during<T>(&self, body: impl FnOnce() -> T) -> T {
        tracing::subscriber::with_default(self.subscriber(), body)
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every span, in creation order.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.lock().spans.clone()
    }

    /// The spans named `name`, in creation order.
    pub fn spans_named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|span| span.name == name)
            .collect()
    }

    /// Every event, in order.
    pub fn events(&self) -> Vec<EventRecord> {
        self.lock().events.clone()
    }

    /// The events with message `message`, in order.
    pub fn events_saying(&self, message: &str) -> Vec<EventRecord> {
        self.events()
            .into_iter()
            .filter(|event| event.message() == message)
            .collect()
    }

    /// Everything captured as text, as a log would show it: every span's and event's
    /// name, target and fields.
    pub fn text(&self) -> String {
        let captured = self.lock();
        let mut text = String::new();
        for span in &captured.spans {
            text.push_str(&format!(
                "{} {} {:?}\n",
                span.target, span.name, span.fields
            ));
        }
        for event in &captured.events {
            text.push_str(&format!(
                "{} {} {:?}\n",
                event.target, event.level, event.fields
            ));
        }
        text
    }
}

/// Collects fields as text.
struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|parent| parent.extensions().get::<Seq>().map(|seq| seq.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut captured = self.lock();
        let seq = captured.spans.len();
        captured.spans.push(SpanRecord {
            seq,
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            parent,
            fields,
        });
        span.extensions_mut().insert(Seq(seq));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(seq) = ctx
            .span(id)
            .and_then(|span| span.extensions().get::<Seq>().map(|seq| seq.0))
        else {
            return;
        };
        let mut captured = self.lock();
        if let Some(span) = captured.spans.get_mut(seq) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx
            .event_span(event)
            .and_then(|span| span.extensions().get::<Seq>().map(|seq| seq.0));
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.lock().events.push(EventRecord {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            span,
            fields,
        });
    }
}
