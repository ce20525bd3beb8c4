//! Webhook deliveries to `https` URLs speak TLS and verify the receiver's certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use payd_ports::{SendOutcome, WebhookRequest, WebhookSender};
use payd_processors::webhook::{HttpWebhookConfig, HttpWebhookSender};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

// Goal: an https webhook URL gets a TLS handshake, not a plain-text request or a "no TLS
// backend" error. Method: a local TCP listener reads the first bytes the sender writes: a
// TLS handshake record (0x16, version 3.x) carrying a ClientHello (type 1). The listener
// then hangs up, and the delivery is a transport failure (to be retried), never a success.
#[tokio::test]
async fn https_deliveries_start_a_tls_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut first = [0_u8; 6];
        socket.read_exact(&mut first).await.unwrap();
        first
    });
    let sender = HttpWebhookSender::new(&HttpWebhookConfig::default()).unwrap();
    let outcome = sender
        .send(&WebhookRequest {
            url: format!("https://127.0.0.1:{port}/hook"),
            event_id: "evt_1".to_owned(),
            timestamp: "1".to_owned(),
            signature: "v1=00".to_owned(),
            body: b"{}".to_vec(),
        })
        .await;
    let first = server.await.unwrap();
    assert_eq!(first[0], 0x16, "a TLS handshake record");
    assert_eq!(first[1], 0x03, "TLS major version 3");
    assert_eq!(first[5], 0x01, "a ClientHello");
    assert!(matches!(outcome, SendOutcome::Transport(_)), "{outcome:?}");
}
