//! [`payd_processor_sim::run`] over a real socket, and the public [`parse_fee`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use payd_processor_sim::{SimConfig, parse_fee, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::config;

/// A free port: bind to 0, read it back, release it.
async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    listener.local_addr().unwrap()
}

async fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn run_serves_until_shutdown() {
    let address = free_port().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(
        SimConfig {
            listen: address,
            ..config()
        },
        async {
            let _ = stopped.await;
        },
    ));

    // Wait for the bind.
    let mut response = String::new();
    for _ in 0..100 {
        if TcpStream::connect(address).await.is_ok() {
            response = http_get(address, "/payments/service-health").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"failing":false,"minResponseTime":0}"#),
        "{response}"
    );

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn run_reports_a_taken_address() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let taken = listener.local_addr().unwrap();
    let result = run(
        SimConfig {
            listen: taken,
            ..config()
        },
        std::future::pending(),
    )
    .await;
    assert!(result.is_err());
}

#[test]
fn fees_parse_exactly_into_basis_points() {
    assert_eq!(parse_fee("0.05"), Ok(500));
    assert_eq!(parse_fee("0.1"), Ok(1000));
    assert_eq!(parse_fee("0.15"), Ok(1500));
    assert_eq!(parse_fee("0.0001"), Ok(1));
    assert_eq!(parse_fee("1"), Ok(10_000));
    assert!(parse_fee("0.00005").is_err(), "finer than a basis point");
    assert!(parse_fee("1.5").is_err(), "more than 100 %");
    assert!(parse_fee("-0.05").is_err());
    assert!(parse_fee("abc").is_err());
}
