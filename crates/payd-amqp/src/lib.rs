//! payd's work transport on RabbitMQ (lapin), for workers that share one PostgreSQL
//! database. RabbitMQ carries work; it never decides anything: every message announces
//! something PostgreSQL already holds, a consumer acknowledges a message only after its own
//! commit, and the workers' sweep of PostgreSQL still finds anything a message did not
//! bring. A broker outage slows the workers down (to the sweep's pace); it loses nothing.
//!
//! - [`Amqp`]: one connection, kept by [`Amqp::run`]: connect, declare the topology,
//!   consume; when the connection is lost (lapin does not reconnect by itself), connect
//!   and declare again with a capped backoff, until shutdown.
//! - The topology: per work queue ([`PAYMENTS_QUEUE`], [`TRANSFERS_QUEUE`],
//!   [`SETTLE_QUEUE`]), a quorum
//!   queue (durable, replicated, with a delivery limit) and its quorum dead-letter queue
//!   ([`dead_letters`]: `<queue>.dead`), where a message ends that was refused as malformed
//!   or delivered too often.
//! - [`Amqp`] is also the outbox relay's [`Publisher`]: persistent messages on a channel
//!   in confirm mode, each confirmed by the broker before the relay deletes its row.
//! - The consumers, one per [`Consumer`]: prefetch-bounded, manual acknowledgements. Each
//!   delivery is handed to its queue's [`Deliver`] callback (the gateway's inbox, the
//!   transfer settler) with a settle handle; the delivery is acknowledged when the handle
//!   is sent, returned to the queue when it is dropped.
//!
//! Metrics: `payd_broker_up{broker="rabbitmq"}`, `payd_amqp_reconnects_total`,
//! `payd_amqp_published_total{queue}`, `payd_amqp_consumed_total{queue}`,
//! `payd_amqp_redelivered_total{queue}`, `payd_amqp_dead_lettered_total{queue}` (refused
//! here as malformed), `payd_amqp_dead_letters{queue}` (gauge: messages in the dead-letter
//! queue, whatever sent them there).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use payd_domain::gateway::backoff::Backoff;
use payd_ports::{OutboxMessage, PublishError, Publisher};
pub use payd_ports::{PAYMENTS_QUEUE, SETTLE_QUEUE, TRANSFERS_QUEUE};
use tokio::sync::{oneshot, watch};

/// Where a message of `queue` goes when it is refused or delivered too often.
pub fn dead_letters(queue: &str) -> String {
    format!("{queue}.dead")
}

/// How long the broker may take to confirm one batch of publishes.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a session checks its connection and reads the dead-letter queue's depth.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Pauses before reconnecting: 100 ms, doubled per failure up to 2 s.
const RECONNECT: Backoff = Backoff {
    base_ms: 100,
    cap_ms: 2_000,
    jitter_percent: 0,
};

/// What the consumer does with a delivery's body: `true` if it took it (and will send the
/// settle handle once its commit made the message unnecessary), `false` if the body is
/// malformed (the message is dead-lettered).
pub type Deliver = Arc<dyn Fn(&[u8], oneshot::Sender<()>) -> bool + Send + Sync>;

/// A work queue and what takes its deliveries.
#[derive(Clone)]
pub struct Consumer {
    /// The queue, declared (with its dead-letter queue) at every connection.
    pub queue: &'static str,
    /// Takes each delivery.
    pub deliver: Deliver,
}

/// Settings of the connection and its consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (the vhost URL-encoded: `%2f` is `/`).
    pub url: String,
    /// Unacknowledged deliveries the consumer may hold at once.
    pub prefetch: u16,
    /// Deliveries of one message before the broker dead-letters it (a message that keeps
    /// coming back, e.g. because every worker that takes it dies, stops circulating).
    pub delivery_limit: i64,
}

impl AmqpConfig {
    pub const PREFETCH_DEFAULT: u16 = 256;
    pub const DELIVERY_LIMIT_DEFAULT: i64 = 20;

    /// Settings with `url` checked (the connection opens later, in [`Amqp::run`]).
    pub fn new(url: &str, prefetch: u16, delivery_limit: i64) -> Result<AmqpConfig, String> {
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|error| format!("not an AMQP URL: {error}"))?;
        Ok(AmqpConfig {
            url: url.to_owned(),
            prefetch,
            delivery_limit,
        })
    }
}

/// A connection to RabbitMQ, kept open by [`Amqp::run`].
pub struct Amqp {
    config: AmqpConfig,
    /// The confirm-mode channel of the current session; `None` while disconnected.
    publish: RwLock<Option<Channel>>,
}

impl std::fmt::Debug for Amqp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amqp")
            .field("prefetch", &self.config.prefetch)
            .finish_non_exhaustive()
    }
}

impl Amqp {
    /// Not connected yet: the connection opens in [`Amqp::run`].
    pub fn new(config: AmqpConfig) -> Arc<Amqp> {
        Arc::new(Amqp {
            config,
            publish: RwLock::new(None),
        })
    }

    /// Keeps a session open until `shutdown` turns true, reconnecting after every loss;
    /// each session declares every consumer's queue and consumes it.
    pub async fn run(
        self: Arc<Self>,
        consumers: Vec<Consumer>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        metrics::gauge!("payd_broker_up", "broker" => "rabbitmq").set(0.0);
        let mut failures = 0_u32;
        let mut connected_before = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut connected = false;
            let result = self
                .session(&consumers, &mut shutdown, &mut connected)
                .await;
            self.set_publish(None);
            metrics::gauge!("payd_broker_up", "broker" => "rabbitmq").set(0.0);
            let error = match result {
                Ok(()) => return,
                Err(error) => error,
            };
            if connected {
                failures = 0;
                metrics::counter!("payd_amqp_reconnects_total").increment(1);
                tracing::warn!(%error, "Lost RabbitMQ; reconnecting (the outbox holds new work meanwhile).");
            } else if failures == 0 {
                let first = if connected_before { "again" } else { "yet" };
                tracing::warn!(%error, "Cannot reach RabbitMQ {first}; retrying (the outbox holds new work meanwhile).");
            }
            connected_before |= connected;
            failures = failures.saturating_add(1);
            let pause = Duration::from_millis(RECONNECT.delay_ms(failures.saturating_sub(1), 0));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    fn set_publish(&self, channel: Option<Channel>) {
        *self
            .publish
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = channel;
    }

    /// One connection's life: `Ok` at shutdown, the error that ended it otherwise.
    async fn session(
        &self,
        consumers: &[Consumer],
        shutdown: &mut watch::Receiver<bool>,
        connected: &mut bool,
    ) -> Result<(), lapin::Error> {
        let connection =
            Connection::connect(&self.config.url, ConnectionProperties::default()).await?;
        let setup = connection.create_channel().await?;
        for consumer in consumers {
            declare(&setup, consumer.queue, self.config.delivery_limit).await?;
        }
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        // One channel per queue, so that the prefetch bounds each queue on its own (a burst
        // of transfers never starves the payments of deliveries).
        let mut streams = Vec::with_capacity(consumers.len());
        for (index, consumer) in consumers.iter().enumerate() {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(self.config.prefetch, BasicQosOptions::default())
                .await?;
            let stream = channel
                .basic_consume(
                    consumer.queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            // A consumer the broker cancelled (its queue deleted, say) ends its stream; the
            // merged stream would go on without it, so its end is an error of the session:
            // reconnect and consume every queue again.
            let end = futures_util::stream::once(std::future::ready((index, Err(closed()))));
            streams.push(stream.map(move |delivery| (index, delivery)).chain(end));
        }
        let mut deliveries = futures_util::stream::select_all(streams);
        // Dropped when this session ends: the waits for its deliveries' settle handles end
        // with it (their acknowledgements could only fail on the closed channel), which
        // closes those handles, so their holders see them as stale.
        let (_alive, session) = watch::channel(());
        self.set_publish(Some(publish));
        *connected = true;
        metrics::gauge!("payd_broker_up", "broker" => "rabbitmq").set(1.0);
        tracing::info!("Connected to RabbitMQ.");
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        loop {
            tokio::select! {
                delivery = deliveries.next() => match delivery {
                    Some((index, Ok(delivery))) => take(delivery, &consumers[index], session.clone()).await,
                    Some((_, Err(error))) => return Err(error),
                    None => return Err(closed()),
                },
                _ = check.tick() => {
                    if !connection.status().connected() {
                        return Err(closed());
                    }
                    for consumer in consumers {
                        let dead = ready(&setup, &dead_letters(consumer.queue)).await?;
                        metrics::gauge!("payd_amqp_dead_letters", "queue" => consumer.queue)
                            .set(f64::from(dead));
                        // Ready messages only: the ones delivered and not yet acknowledged
                        // are this and the other consumers' prefetch.
                        let work = ready(&setup, consumer.queue).await?;
                        metrics::gauge!("payd_amqp_queue_depth", "queue" => consumer.queue)
                            .set(f64::from(work));
                    }
                }
                () = stopped(shutdown) => break,
            }
        }
        // Unacknowledged deliveries return to the queue with the connection.
        let _ = connection.close(200, "payd shutting down".into()).await;
        Ok(())
    }
}

/// The messages ready in `queue` (a passive declare: the queue is left as it is).
async fn ready(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count())
}

/// Resolves once `shutdown` turns true (holding no borrow of it, so that the `select!`s
/// that await it stay `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The error of a session whose connection (or consumer) closed without one of its own.
fn closed() -> lapin::Error {
    lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
        lapin::ConnectionState::Closed,
    ))
}

/// Hands one delivery over; acknowledges it once settled, returns it to the queue if the
/// settle handle is dropped, dead-letters it if it is malformed.
async fn take(
    delivery: lapin::message::Delivery,
    consumer: &Consumer,
    mut session: watch::Receiver<()>,
) {
    let queue = consumer.queue;
    metrics::counter!("payd_amqp_consumed_total", "queue" => queue).increment(1);
    if delivery.redelivered {
        metrics::counter!("payd_amqp_redelivered_total", "queue" => queue).increment(1);
    }
    let (settle, settled) = oneshot::channel();
    if !(consumer.deliver)(&delivery.data, settle) {
        metrics::counter!("payd_amqp_dead_lettered_total", "queue" => queue).increment(1);
        tracing::warn!(
            queue,
            body = %String::from_utf8_lossy(&delivery.data).chars().take(80).collect::<String>(),
            "Malformed message; dead-lettered."
        );
        let options = BasicRejectOptions { requeue: false };
        let _ = delivery.acker.reject(options).await;
        return;
    }
    let acker = delivery.acker;
    tokio::spawn(async move {
        let settled = tokio::select! {
            settled = settled => settled,
            // The session ended: the broker redelivers the message to a live consumer.
            _ = session.changed() => return,
        };
        // A failed ack (the channel closed meanwhile) means a redelivery, which is harmless.
        let _ = match settled {
            Ok(()) => acker.ack(BasicAckOptions::default()).await,
            Err(_) => {
                let options = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                acker.nack(options).await
            }
        };
    });
}

/// Declares the quorum queue `queue` and its dead-letter queue (idempotent while the
/// arguments stay the same).
async fn declare(channel: &Channel, queue: &str, delivery_limit: i64) -> Result<(), lapin::Error> {
    let dead_letters = dead_letters(queue);
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut dead = FieldTable::default();
    dead.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    channel
        .queue_declare(dead_letters.as_str().into(), durable, dead)
        .await?;
    let mut work = FieldTable::default();
    work.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    work.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(delivery_limit),
    );
    work.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    work.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(dead_letters.as_str())),
    );
    channel.queue_declare(queue.into(), durable, work).await?;
    Ok(())
}

#[async_trait]
impl Publisher for Amqp {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        let channel = self
            .publish
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| PublishError("RabbitMQ is not connected".to_owned()))?;
        let failed = |error: lapin::Error| PublishError(error.to_string());
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(message.id.to_string().into());
            // Mandatory: a message no queue takes comes back as an error, not a silent drop.
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            let confirm = channel
                .basic_publish(
                    "".into(),
                    message.queue.as_str().into(),
                    options,
                    message.body.as_bytes(),
                    properties,
                )
                .await
                .map_err(failed)?;
            confirms.push(confirm);
        }
        let confirmed = async {
            for confirm in confirms {
                match confirm.await.map_err(failed)? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(_)) => {
                        return Err(PublishError("no queue took the message".to_owned()));
                    }
                    Confirmation::Nack(_) => {
                        return Err(PublishError("the broker refused the message".to_owned()));
                    }
                    Confirmation::NotRequested => {
                        return Err(PublishError(
                            "the channel is not in confirm mode".to_owned(),
                        ));
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, confirmed)
            .await
            .map_err(|_| PublishError("the broker did not confirm in time".to_owned()))??;
        for message in messages {
            metrics::counter!("payd_amqp_published_total", "queue" => message.queue.clone())
                .increment(1);
        }
        Ok(())
    }
}
